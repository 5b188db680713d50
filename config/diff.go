package config

import (
	"maps"
	"reflect"
	"slices"
)

// Changed lists the settings that differ between two configurations, by
// their names in the file: "pgmts.listen", "pool.mode", "databases.NAME",
// "users.NAME" (a section added, removed or changed). Passwords are never
// shown, only the section that holds them.
func Changed(old, cur *Config) []string {
	var out []string
	out = append(out, changedFields("pgmts", reflect.ValueOf(old.Pgmts), reflect.ValueOf(cur.Pgmts))...)
	out = append(out, changedFields("pool", reflect.ValueOf(old.Pool), reflect.ValueOf(cur.Pool))...)
	out = append(out, changedSections("databases", old.Databases, cur.Databases)...)
	out = append(out, changedSections("users", old.Users, cur.Users)...)
	if !reflect.DeepEqual(old.hbaRules, cur.hbaRules) && !slices.Contains(out, "pgmts.auth_hba_file") {
		out = append(out, "pgmts.auth_hba_file (contents)")
	}
	return out
}

func changedFields(section string, a, b reflect.Value) []string {
	var out []string
	for i := range a.NumField() {
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			out = append(out, section+"."+a.Type().Field(i).Tag.Get("toml"))
		}
	}
	return out
}

func changedSections[V any](kind string, a, b map[string]V) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(a)) {
		if v, ok := b[name]; !ok || !reflect.DeepEqual(a[name], v) {
			out = append(out, kind+"."+name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[name]; !ok {
			out = append(out, kind+"."+name)
		}
	}
	return out
}

// Live returns cur with the settings a running pgmts cannot change (its
// listeners and log format) taken from old, and the names of those of
// them that cur wanted to change.
func Live(old, cur *Config) (*Config, []string) {
	live := *cur
	var kept []string
	lv, ov := reflect.ValueOf(&live.Pgmts).Elem(), reflect.ValueOf(old.Pgmts)
	for i := range lv.NumField() {
		name := "pgmts." + lv.Type().Field(i).Tag.Get("toml")
		if slices.Contains(restartOnly, name) && !reflect.DeepEqual(lv.Field(i).Interface(), ov.Field(i).Interface()) {
			kept = append(kept, name)
			lv.Field(i).Set(ov.Field(i))
		}
	}
	return &live, kept
}
