package circuits

import (
	"runtime"
	"testing"
	"time"
)

// A login set no circuit holds any more leaves the table.
func TestLoginSetForgotten(t *testing.T) {
	settings := map[string]string{"application_name": "TestLoginSetForgotten"}
	key := loginKey{settings: "application_name\x00TestLoginSetForgotten\x00"}
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

// Clients that logged in with the same settings to the same pool share one
// login set; another pool's clients (another ParameterStatus map) get
// their own, and a client that changes a setting copies it, keeping what
// it was told at login.
func TestLoginSetSharedPerPool(t *testing.T) {
	settings := map[string]string{"Application_Name": "TestLoginSetSharedPerPool"}
	poolA := map[string]string{"TimeZone": "UTC"}
	poolB := map[string]string{"TimeZone": "UTC"}
	login := func(reported map[string]string) *Circuit {
		c := New(Transaction, settings)
		c.SetLoginReported(reported)
		return c
	}
	a1, a2, b := login(poolA), login(poolA), login(poolB)
	if a1.login != a2.login {
		t.Error("two clients of one pool with the same settings do not share a login set")
	}
	if a1.login == b.login || b.login.told()["TimeZone"] != "UTC" {
		t.Errorf("another pool's client shares the set or lost its ParameterStatus set: %+v", b.login)
	}
	if New(Transaction, nil).login != nil {
		t.Error("a circuit with no settings holds a login set before login")
	}
	a1.Reported("application_name", "changed", true)
	if a1.login == a2.login || a2.Settings()["application_name"] != "TestLoginSetSharedPerPool" ||
		a1.Settings()["application_name"] != "changed" || a1.login.told()["TimeZone"] != "UTC" {
		t.Errorf("a SET did not copy the login set: %+v / %+v", a1.login, a2.login)
	}
}
