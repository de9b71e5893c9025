package kafka

import (
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/segmentio/kafka-go/compress"
)

// kafka-go compresses with a zstd encoder at level 3 whose tables and block buffers hold about
// 2.5 MiB of an agent's 4.5 MiB live heap (a heap profile of `gpufleet agent --source sim --gpus 8`)
// to compress one node's message, a few KiB, per second. Level 1 ("fastest") with buffers grown
// only as the input needs them holds about 0.4 MiB; an 8-GPU message comes out 3–6 % larger
// (docs/agent.md has the figures and the command). Any zstd frame is the same to brokers and
// consumers, so only the encoder changes; reading stays kafka-go's.

// leanZstd is a kafka-go compression codec writing zstd at level 1 with lower encoder memory.
type leanZstd struct {
	encoders sync.Pool // *zstd.Encoder
}

// InstallLeanZstd makes every kafka-go client of the process compress zstd with leanZstd. kafka-go
// looks its codecs up in one process-wide table, so a composition root calls this once, before any
// client starts.
func InstallLeanZstd() { compress.Codecs[compress.Zstd] = &leanZstd{} }

func (c *leanZstd) Code() int8   { return int8(compress.Zstd) }
func (c *leanZstd) Name() string { return "zstd" }

func (c *leanZstd) NewReader(r io.Reader) io.ReadCloser { return compress.ZstdCodec.NewReader(r) }

func (c *leanZstd) NewWriter(w io.Writer) io.WriteCloser {
	enc, _ := c.encoders.Get().(*zstd.Encoder)
	if enc == nil {
		var err error
		enc, err = zstd.NewWriter(w, LeanZstdOptions()...)
		if err != nil {
			return &leanWriter{err: err}
		}
	} else {
		enc.Reset(w)
	}
	return &leanWriter{c: c, enc: enc}
}

// LeanZstdOptions are leanZstd's encoder options.
func LeanZstdOptions() []zstd.EOption {
	return []zstd.EOption{
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithLowerEncoderMem(true),
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true),
	}
}

type leanWriter struct {
	c   *leanZstd
	enc *zstd.Encoder
	err error
}

func (w *leanWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.enc == nil {
		return 0, io.ErrClosedPipe
	}
	return w.enc.Write(p)
}

func (w *leanWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.enc == nil {
		return 0, io.ErrClosedPipe
	}
	return w.enc.ReadFrom(r)
}

// Close ends the frame and returns the encoder to the pool, holding no writer.
func (w *leanWriter) Close() error {
	if w.enc == nil {
		return w.err
	}
	err := w.enc.Close()
	w.enc.Reset(io.Discard)
	w.c.encoders.Put(w.enc)
	w.enc = nil
	if err != nil {
		w.err = err
	}
	return err
}
