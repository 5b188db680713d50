package circuits

import (
	"runtime"
	"testing"
	"time"
)

// A login set no circuit holds any more leaves the table.
func TestLoginSetForgotten(t *testing.T) {
	settings := map[string]string{"application_name": "TestLoginSetForgotten"}
	key := "application_name\x00TestLoginSetForgotten\x00"
	c := New(Transaction, settings)
	loginSets.Lock()
	_, held := loginSets.m[key]
	loginSets.Unlock()
	if !held {
		t.Fatal("login set not in the table")
	}
	runtime.KeepAlive(c)
	for range 100 {
		runtime.GC() // cleanups run after a collection, on their own goroutine
		time.Sleep(10 * time.Millisecond)
		loginSets.Lock()
		_, held = loginSets.m[key]
		loginSets.Unlock()
		if !held {
			return
		}
	}
	t.Fatal("a login set nobody holds is still in the table after 100 collections")
}
