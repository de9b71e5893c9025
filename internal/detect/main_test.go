package detect_test

import (
	"os"
	"testing"

	"github.com/gpufleet/gpufleet/internal/testenv"
)

// The package's tests share one broker (testenv.Kafka), stopped when they end.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
