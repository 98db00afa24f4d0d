package wire

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestSessionKeyComesFromItsVariableAndIsLongEnough(t *testing.T) {
	env := map[string]string{"SHORT": "too short a key", "GOOD": strings.Repeat("k", MinSessionKey)}
	getenv := func(k string) string { return env[k] }
	for _, name := range []string{"SHORT", "UNSET"} {
		_, err := SessionKey(name, getenv)
		if err == nil || !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), env["SHORT"]) {
			t.Errorf("%s: %v; want an error that names the variable, never its value", name, err)
		}
	}
	if key, err := SessionKey("GOOD", getenv); err != nil || string(key) != env["GOOD"] {
		t.Errorf("GOOD: %q %v", key, err)
	}
}

func TestReplicaIDIsTheVariableOrHostAndProcess(t *testing.T) {
	if got := ReplicaID(func(string) string { return "r-7" }); got != "r-7" {
		t.Errorf("with TOOLGATE_REPLICA_ID: %q", got)
	}
	host, _ := os.Hostname()
	if got, want := ReplicaID(func(string) string { return "" }), host+"-"+strconv.Itoa(os.Getpid()); got != want {
		t.Errorf("without it: %q, want %q", got, want)
	}
}
