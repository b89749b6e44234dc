package file

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	debugCheckIncremental = true
	os.Exit(m.Run())
}
