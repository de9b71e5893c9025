package spool

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"io"
	"reflect"
	"testing"

	"github.com/gpufleet/gpufleet/internal/wire"
)

// The record decoder reads whatever a crash or a damaged disk left in a segment: it never panics
// or allocates by a damaged length, and what it accepts encodes back to a record it reads the same.
func FuzzReadRecord(f *testing.F) {
	whole := encode(Batch{Rows: 8, Events: 1, Msgs: []wire.Message{{Topic: wire.SamplesTopic, Key: []byte("node-1"), Value: []byte("v")},
		{Topic: wire.EventsTopic, Key: []byte("node-1"), Value: bytes.Repeat([]byte{7}, 300)}}})
	f.Add(whole)
	f.Add(whole[:len(whole)-3])                       // torn mid-record
	f.Add(append(whole, encode(Batch{Rows: 1})...))   // two records
	f.Add([]byte{200, 0, 0, 0, 1, 2, 3})              // a header promising more than follows
	f.Add([]byte{0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0}) // a damaged length under the limit
	f.Add(encode(Batch{}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		check(t, data)
		// The same bytes as a payload under a right header, so that the CRC does not keep the
		// fuzzer away from the payload decoder.
		rec := binary.LittleEndian.AppendUint32(nil, uint32(len(data)))
		rec = binary.LittleEndian.AppendUint32(rec, crc32.Checksum(data, crcTable))
		check(t, append(rec, data...))
	})
}

// check reads data as a record: no panic, and what is accepted reads back the same re-encoded.
func check(t *testing.T, data []byte) {
	t.Helper()
	b, size, err := readRecord(bytes.NewReader(data))
	if err != nil {
		if err != io.EOF && err != errTorn {
			t.Fatalf("error %v is neither EOF nor a torn record", err)
		}
		return
	}
	if size < 28 || size > int64(len(data)) {
		t.Fatalf("record of %d bytes from %d", size, len(data))
	}
	again, size2, err := readRecord(bytes.NewReader(encode(b)))
	if err != nil || size2 > size || !reflect.DeepEqual(normal(again), normal(b)) {
		t.Fatalf("re-encoded record reads back as %+v (%d bytes, %v), want %+v", again, size2, err, b)
	}
}

// normal makes empty and nil byte slices compare equal.
func normal(b Batch) Batch {
	for i, m := range b.Msgs {
		if len(m.Key) == 0 {
			b.Msgs[i].Key = nil
		}
		if len(m.Value) == 0 {
			b.Msgs[i].Value = nil
		}
	}
	if len(b.Msgs) == 0 {
		b.Msgs = nil
	}
	return b
}

// state.json is read at every start: whatever it holds, parsing never panics, and what it accepts
// is a usable state (a head not before the start of a segment, a sequence map to fill).
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"head":{"seg":3,"off":4096},"seq":{"node-00000":17,"gpu-a":1}}`))
	f.Add([]byte(`{"head":{"seg":0,"off":0},"seq":null}`))
	f.Add([]byte(`{"head":{"seg":-1,"off":-20}}`))
	f.Add([]byte(`{"head":{"seg":9223372036854775807,"off":9223372036854775807},"seq":{"":18446744073709551615}}`))
	f.Add([]byte(`{"head":{"seg":1e3}}`))
	f.Add([]byte(``)) // what a rename without fsync can leave after a power loss
	f.Add([]byte(`{"head":`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseState(data)
		if err != nil {
			return
		}
		if st.Head.Seg < 0 || st.Head.Off < 0 || st.Seq == nil {
			t.Fatalf("accepted state %+v", st)
		}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseState(b)
		if err != nil || !reflect.DeepEqual(again, st) {
			t.Fatalf("state %+v saved and read back as %+v (%v)", st, again, err)
		}
	})
}
