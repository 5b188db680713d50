package circuits

import (
	"maps"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"weak"
)

// loginSet is what a circuit starts from: the settings the client logged
// in with (keyed by lower-case name) and the server's ParameterStatus set
// it was told at login (reported, the pool's, shared by its clients).
// Clients that logged in alike share one (an application's connections
// usually send the same startup parameters): it is never written, and a
// circuit that changes a setting makes its own copy (key empty).
type loginSet struct {
	settings, reported map[string]string
	key                loginKey
}

// get returns the setting name (lower case).
func (s *loginSet) get(name string) (string, bool) {
	if s == nil {
		return "", false
	}
	v, ok := s.settings[name]
	return v, ok
}

// told returns the ParameterStatus set the client was told at login.
func (s *loginSet) told() map[string]string {
	if s == nil {
		return nil
	}
	return s.reported
}

// loginKey names a shared login set: the settings' canonical form, and
// the address of the reported map (a pool's clients share one; the set
// holds it, so the address is not reused while the entry lives).
type loginKey struct {
	settings string
	reported uintptr
}

// loginSets holds the login sets in use; a set nobody holds any more is
// collected, and its entry removed.
var loginSets = struct {
	sync.Mutex
	m map[loginKey]weak.Pointer[loginSet]
}{m: map[loginKey]weak.Pointer[loginSet]{}}

// internSettings returns the shared login set for settings (names in any
// case), or nil when there are none.
func internSettings(settings map[string]string) *loginSet {
	if len(settings) == 0 {
		return nil
	}
	lower := make(map[string]string, len(settings))
	for k, v := range settings {
		lower[strings.ToLower(k)] = v
	}
	var key strings.Builder
	for _, k := range slices.Sorted(maps.Keys(lower)) {
		// A NUL cannot be in a startup parameter, so the form is unambiguous.
		key.WriteString(k)
		key.WriteByte(0)
		key.WriteString(lower[k])
		key.WriteByte(0)
	}
	return intern(loginKey{settings: key.String()}, lower, nil)
}

// withReported returns the shared login set of s's settings with reported
// as what its clients were told at login. Once that set exists (the
// pool's first client made it) this allocates nothing.
func (s *loginSet) withReported(reported map[string]string) *loginSet {
	var settings map[string]string
	var k loginKey
	if s != nil {
		settings, k = s.settings, s.key
	}
	if reported != nil {
		k.reported = reflect.ValueOf(reported).Pointer()
	}
	if k == (loginKey{}) {
		return nil
	}
	return intern(k, settings, reported)
}

// intern returns the set under k, making it from settings and reported.
func intern(k loginKey, settings, reported map[string]string) *loginSet {
	loginSets.Lock()
	defer loginSets.Unlock()
	if s := loginSets.m[k].Value(); s != nil {
		return s
	}
	s := &loginSet{settings: settings, reported: reported, key: k}
	loginSets.m[k] = weak.Make(s)
	runtime.AddCleanup(s, forgetLoginSet, k)
	return s
}

func forgetLoginSet(key loginKey) {
	loginSets.Lock()
	defer loginSets.Unlock()
	if loginSets.m[key].Value() == nil {
		delete(loginSets.m, key)
	}
}
