package server

import (
	"testing"
	"time"
)

func TestAppendMillis(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                   "0",
		time.Microsecond:                    "0.001",
		12 * time.Microsecond:               "0.012",
		120 * time.Microsecond:              "0.12",
		999*time.Microsecond + 999:          "0.999",
		time.Millisecond:                    "1",
		1500 * time.Microsecond:             "1.5",
		2469 * time.Microsecond:             "2.469",
		3*time.Second + 40*time.Microsecond: "3000.04",
		-time.Millisecond:                   "0",
	} {
		if got := string(appendMillis([]byte("x"), d)); got != "x"+want {
			t.Errorf("appendMillis(%v) = %q, want %q", d, got, "x"+want)
		}
	}
}
