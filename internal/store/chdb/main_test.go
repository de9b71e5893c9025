package chdb_test

import (
	"os"
	"testing"

	"github.com/gpufleet/gpufleet/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
