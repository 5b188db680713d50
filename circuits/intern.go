package circuits

import (
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"weak"
)

// settingSet is a circuit's settings. The set a client logs in with is
// shared by every client that logged in with the same settings (an
// application's connections usually send the same startup parameters):
// it is never written, and a circuit that changes a setting makes its
// own copy.
type settingSet struct{ m map[string]string }

func (s *settingSet) get(name string) (string, bool) {
	if s == nil {
		return "", false
	}
	v, ok := s.m[name]
	return v, ok
}

// loginSets holds the login sets in use, by canonical form; a set nobody
// holds any more is collected, and its entry removed.
var loginSets = struct {
	sync.Mutex
	m map[string]weak.Pointer[settingSet]
}{m: map[string]weak.Pointer[settingSet]{}}

// internSettings returns the shared login set for settings (names in any
// case), or nil when there are none.
func internSettings(settings map[string]string) *settingSet {
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
	k := key.String()
	loginSets.Lock()
	defer loginSets.Unlock()
	if s := loginSets.m[k].Value(); s != nil {
		return s
	}
	s := &settingSet{m: lower}
	loginSets.m[k] = weak.Make(s)
	runtime.AddCleanup(s, forgetLoginSet, k)
	return s
}

func forgetLoginSet(key string) {
	loginSets.Lock()
	defer loginSets.Unlock()
	if loginSets.m[key].Value() == nil {
		delete(loginSets.m, key)
	}
}
