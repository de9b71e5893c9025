// Package redact masks the credentials of a DSN for logs and error messages. It lives apart from
// store/backend so that the transports (store/chserver) can use it without an import cycle.
//
// It errs on the side of masking too much: a DSN whose password holds an unescaped '/', '?', '#'
// or '@' is ambiguous (URL parsers disagree on where the user info ends), and then everything
// before the last '@' is masked.
package redact

import (
	"net/url"
	"slices"
	"strings"
)

// Mask replaces every secret: the mask url.URL.Redacted puts in place of a password.
const Mask = "xxxxx"

// Unparsable is what DSN returns for input that has no recognisable scheme.
const Unparsable = "<unparsable DSN>"

// maxLen bounds the DSNs that are parsed for redaction; longer input is no DSN anyone means, and
// is reduced to Unparsable rather than searched.
const maxLen = 16 << 10

// DSN returns dsn with its user-info password and its secret-like query parameters (password=,
// token=, secret_key=, ...) masked and its fragment dropped. Input that does not parse is reduced
// to its scheme ("clickhouse://<unparsable>"), or to Unparsable.
func DSN(dsn string) string {
	scheme, rest, ok := splitScheme(dsn)
	if !ok || len(dsn) > maxLen {
		return Unparsable
	}
	scheme = strings.ToLower(scheme) // as url.Parse does
	if ambiguous(dsn) {
		// What follows the last '@' is the host when that '@' ends the user info. When a '?' or
		// '#' comes before it, the '@' may be inside a parameter value instead, and what follows
		// it the rest of a password.
		at := strings.LastIndex(rest, "@")
		if strings.ContainsAny(rest[:at], "?#") {
			return scheme + "://" + Mask
		}
		if tail, ok := structured(scheme+"://"+rest[at+1:], Secrets(dsn)); ok {
			return scheme + "://" + Mask + "@" + strings.TrimPrefix(tail, scheme+"://")
		}
		return scheme + "://<unparsable>"
	}
	if s, ok := structured(dsn, Secrets(dsn)); ok {
		return s
	}
	return scheme + "://<unparsable>"
}

// Ambiguous reports whether dsn has user info whose end a URL parser may place elsewhere than
// the user meant: a ':' before the last '@', and that '@' not inside the parsed authority (an
// unescaped '/', '?' or '#' in the password, or an unescaped '@' in a parameter value). Such a
// DSN can put part of its password in the host, path or query of the parse.
func Ambiguous(dsn string) bool { return ambiguous(dsn) }

func ambiguous(dsn string) bool {
	_, rest, ok := splitScheme(dsn)
	if !ok {
		return false
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 || !strings.Contains(rest[:at], ":") {
		return false // no password anywhere
	}
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return true
	}
	return strings.Contains(u.Path, "@") || strings.Contains(u.RawPath, "@") ||
		strings.Contains(u.RawQuery, "@") || strings.Contains(u.Fragment, "@")
}

// splitScheme returns the scheme and what follows "://"; ok is false without a valid scheme
// followed by "://".
func splitScheme(dsn string) (scheme, rest string, ok bool) {
	i := strings.Index(dsn, "://")
	if i <= 0 || i > 32 {
		return "", "", false
	}
	for j, c := range dsn[:i] {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (j == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return "", "", false
		}
	}
	return dsn[:i], dsn[i+3:], true
}

// structured is url.URL.Redacted, which masks the user-info password, with the secret-like query
// parameters and the fragment masked as well; a query value equal to one of secrets is masked
// whatever its name. It serves only a DSN whose parse is unambiguous: DSN has masked or cut away
// the user info of the others first.
func structured(dsn string, secrets []string) (string, bool) {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return "", false
	}
	if u.RawQuery != "" {
		u.RawQuery = query(u.RawQuery, secrets)
	}
	if u.Fragment != "" || u.RawFragment != "" {
		// A fragment has no meaning in a DSN; it is most likely the tail of a password with an
		// unescaped '#'.
		u.Fragment, u.RawFragment = Mask, ""
	}
	// The host goes in as parsed: String would percent-encode a non-ASCII one, and the output
	// could then spell a password such as "%C3%A9" that the input held only in its user info.
	host := u.Host
	u.Host = ""
	// What is left is scheme ":" ["//" [user info "@"]] path query fragment; String leaves out
	// the "//" when there is neither user info nor path ("clickhouse://?x=1").
	rest := strings.TrimPrefix(strings.TrimPrefix(u.Redacted(), u.Scheme+":"), "//")
	head := u.Scheme + "://"
	if u.User != nil {
		// The user info is escaped: its first '@' is the one that ends it.
		at := strings.Index(rest, "@")
		head, rest = head+rest[:at+1], rest[at+1:]
	}
	return head + host + rest, true
}

// Query masks the values of a raw query string's secret-like parameters and the passwords of
// URL-valued ones (http_proxy=http://u:p@proxy). Segments that follow a masked value and do not
// start with a parameter name ("&3tPw", "&=x") are dropped: they are the rest of a value with an
// unescaped '&'. One that does ("&debug=1") is a parameter, as the driver reads it.
func Query(raw string) string { return query(raw, nil) }

func query(raw string, secrets []string) string {
	segs := strings.Split(raw, "&")
	out := make([]string, 0, len(segs))
	masking := false
	for _, seg := range segs {
		key, val, hasEq := strings.Cut(seg, "=")
		switch {
		case secretSegment(seg):
			out = append(out, key+"="+Mask)
			masking = true
		case masking && !paramName(unescape(key)):
			continue
		case hasEq && (slices.Contains(secrets, val) || slices.Contains(secrets, unescape(val))):
			out = append(out, key+"="+Mask)
			masking = false
		case hasEq && hasPassword(unescape(val)):
			out = append(out, key+"="+url.QueryEscape(DSN(unescape(val))))
			masking = false
		default:
			out = append(out, seg)
			masking = false
		}
	}
	return strings.Join(out, "&")
}

// paramName reports whether s can name a parameter (a ClickHouse setting or a driver option).
func paramName(s string) bool {
	for i, c := range s {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_'
		if !letter && (i == 0 || !('0' <= c && c <= '9' || c == '.' || c == '-')) {
			return false
		}
	}
	return s != ""
}

// hasPassword reports whether a parameter value may be a URL with a password (a ':' before its
// last '@').
func hasPassword(v string) bool {
	at := strings.LastIndex(v, "@")
	return at > 0 && strings.Contains(v[:at], ":")
}

// secretSegment reports whether a query segment's key, or a key after a '?' inside it, is
// secret-like; percent-encoded keys are decoded first (pass%77ord is password). A '?' inside a
// segment can start a key when the user info's password held an unescaped '?'.
func secretSegment(seg string) bool {
	for _, part := range strings.Split(seg, "?") {
		key, _, _ := strings.Cut(part, "=")
		if SecretKey(unescape(key)) {
			return true
		}
	}
	return false
}

// SecretKey reports whether a parameter named key holds a credential.
func SecretKey(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"pass", "pwd", "secret", "token", "key", "auth", "cred", "jwt", "signature"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

func unescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// Secrets returns the substrings of dsn that may be credentials, raw and percent-decoded: the
// text between the first ':' and the last '@' after the scheme, and the values of secret-like
// query parameters, the fragment, and the whole input when it is no DSN. It over-approximates,
// for checking that a message does not echo them; it does not find a part of one.
func Secrets(dsn string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		for _, dec := range []func(string) (string, error){url.PathUnescape, url.QueryUnescape} {
			if d, err := dec(s); err == nil && d != s && d != "" {
				out = append(out, d)
			}
		}
	}
	_, rest, ok := splitScheme(dsn)
	if !ok || len(dsn) > maxLen {
		// Not a DSN at all: it may be a password given in the wrong place.
		add(dsn)
		return out
	}
	if _, frag, ok := strings.Cut(rest, "#"); ok {
		add(frag)
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if colon := strings.Index(rest[:at], ":"); colon >= 0 {
			add(rest[colon+1 : at])
		}
	}
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if p, has := u.User.Password(); has {
			add(p)
		}
	}
	if q := strings.Index(dsn, "?"); q >= 0 {
		masking := false
		for _, seg := range strings.Split(dsn[q+1:], "&") {
			key, val, hasEq := strings.Cut(seg, "=")
			switch {
			case secretSegment(seg):
				add(val)
				for _, part := range strings.Split(seg, "?")[1:] {
					if _, v, ok := strings.Cut(part, "="); ok {
						add(v)
					}
				}
				masking = true
			case masking && !paramName(unescape(key)):
				add(seg)
			case hasEq && hasPassword(unescape(val)):
				out = append(out, Secrets(unescape(val))...)
				masking = false
			default:
				masking = false
			}
		}
	}
	return out
}

// Leaks reports whether text contains any of Secrets(dsn).
func Leaks(text, dsn string) bool {
	for _, s := range Secrets(dsn) {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}
