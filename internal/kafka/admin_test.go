package kafka

import (
	"slices"
	"strings"
	"testing"
)

func TestParseBrokers(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "localhost:9092", want: []string{"localhost:9092"}},
		{in: "a:9092,b:9093", want: []string{"a:9092", "b:9093"}},
		{in: "  a:9092 ,\tb:9093  ", want: []string{"a:9092", "b:9093"}},
		{in: "a:9092,,b:9093,", want: []string{"a:9092", "b:9093"}},
		{in: ",a:9092", want: []string{"a:9092"}},
		{in: "10.0.0.1:9092", want: []string{"10.0.0.1:9092"}},
		{in: "[::1]:9092", want: []string{"[::1]:9092"}},
		{in: "[::1]:9092, [fe80::1]:19092", want: []string{"[::1]:9092", "[fe80::1]:19092"}},
		{in: "localhost", wantErr: `broker "localhost" is not host:port`},
		{in: "a:9092,b", wantErr: `broker "b" is not host:port`},
		{in: "::1:9092", wantErr: `broker "::1:9092" is not host:port`},
		{in: "[::1]", wantErr: `broker "[::1]" is not host:port`},
		{in: "a:1:2", wantErr: "is not host:port"},
		{in: "kafka:", wantErr: `broker "kafka:" is not host:port (a host name and a port 1-65535)`},
		{in: ":9092", wantErr: `broker ":9092" is not host:port`},
		{in: "kafka:http", wantErr: "a port 1-65535"},
		{in: "kafka:70000", wantErr: "a port 1-65535"},
		{in: "", wantErr: "no broker given"},
		{in: "   ", wantErr: "no broker given"},
		{in: " , ,, ", wantErr: "no broker given"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseBrokers(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseBrokers(%q) = %q, want error containing %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseBrokers(%q) error %q does not contain %q", tt.in, err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("ParseBrokers(%q) returned %q with the error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBrokers(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParseBrokers(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
