package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// With returns a copy of c with one [pgmts] or [pool] setting changed, as
// the admin console's SET key = value asks: key is the setting's name in
// the file, bare ("max_shared_servers") or with its section
// ("pool.max_shared_servers"). The result is validated. Settings that
// need a restart are refused.
func With(c *Config, key, value string) (*Config, error) {
	out := *c
	section, name, ok := strings.Cut(key, ".")
	if !ok {
		section, name = "", key
	}
	var field reflect.Value
	for _, s := range []struct {
		name string
		v    reflect.Value
	}{{"pgmts", reflect.ValueOf(&out.Pgmts).Elem()}, {"pool", reflect.ValueOf(&out.Pool).Elem()}} {
		if section != "" && section != s.name {
			continue
		}
		for i := range s.v.NumField() {
			if s.v.Type().Field(i).Tag.Get("toml") == name {
				field, section = s.v.Field(i), s.name
			}
		}
	}
	if !field.IsValid() {
		return nil, fmt.Errorf("unknown setting %q", key)
	}
	if slices.Contains(restartOnly, section+"."+name) {
		return nil, fmt.Errorf("%s.%s cannot change while pgmts runs; edit the file and restart", section, name)
	}
	if err := setField(field, value); err != nil {
		return nil, fmt.Errorf("%s.%s: %w", section, name, err)
	}
	if err := out.validate(); err != nil {
		return nil, err
	}
	return &out, nil
}

// DatabaseKeys are the pool settings a [databases.NAME] section may carry,
// which the console's SET NAME.key = value changes.
var DatabaseKeys = []string{"mode", "shared_servers", "max_shared_servers"}

// WithDatabase returns a copy of c with one pool setting of the
// [databases.db] section changed (see DatabaseKeys); the result is
// validated.
func WithDatabase(c *Config, db, key, value string) (*Config, error) {
	d, ok := c.Databases[db]
	if !ok {
		return nil, fmt.Errorf("there is no [databases.%s] section (a database served by the \"*\" section is set with \"*\".%s)", db, key)
	}
	if !slices.Contains(DatabaseKeys, key) {
		return nil, fmt.Errorf("%q cannot be set per database; these can: %s", key, strings.Join(DatabaseKeys, ", "))
	}
	v := reflect.ValueOf(&d).Elem()
	for i := range v.NumField() {
		if v.Type().Field(i).Tag.Get("toml") != key {
			continue
		}
		f := v.Field(i)
		if f.Kind() == reflect.Pointer {
			// An override the section may leave out: set it anew.
			f.Set(reflect.New(f.Type().Elem()))
			f = f.Elem()
		}
		if err := setField(f, value); err != nil {
			return nil, fmt.Errorf("databases.%s.%s: %w", db, key, err)
		}
	}
	out := *c
	out.Databases = maps.Clone(c.Databases)
	out.Databases[db] = d
	if err := out.validate(); err != nil {
		return nil, err
	}
	return &out, nil
}

// RestartOnly reports whether a setting ("section.name") needs a restart
// to change.
func RestartOnly(key string) bool { return slices.Contains(restartOnly, key) }

// restartOnly are the settings a running pgmts cannot change (see Live).
var restartOnly = []string{"pgmts.listen", "pgmts.unix_socket_dir", "pgmts.unix_socket_mode",
	"pgmts.metrics_listen", "pgmts.debug_pprof", "pgmts.log_format", "pgmts.io_uring"}

func setField(f reflect.Value, value string) error {
	switch {
	case f.Type() == durationType:
		d, err := time.ParseDuration(value)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as \"30s\"", value)
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.Int:
		n, err := strconv.Atoi(value)
		if err != nil {
			return fmt.Errorf("%q is not an integer", value)
		}
		f.SetInt(int64(n))
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("%q is not true or false", value)
		}
		f.SetBool(b)
	case f.Kind() == reflect.String:
		f.SetString(value)
	case f.Kind() == reflect.Slice:
		var list []string
		for _, s := range strings.Split(value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		f.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("cannot be set from the console")
	}
	return nil
}
