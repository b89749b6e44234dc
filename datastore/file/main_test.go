package file

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv(writerEnv) != "" {
		os.Exit(runWriter())
	}
	debugCheckIncremental = true
	os.Exit(m.Run())
}
