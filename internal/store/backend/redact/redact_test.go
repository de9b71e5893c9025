package redact

import (
	"strings"
	"testing"
)

// HostileDSNs are DSNs whose secrets a careless redaction echoes; secrets lists what must never
// appear in a log line or an error about them. Shared with the backend and chserver tests by
// copy, since test files cannot be imported.
var hostileDSNs = []struct {
	dsn     string
	secrets []string
	want    string // Redact's exact output, when it is worth pinning
}{
	{"clickhous://u:S3cr3tPw@127.0.0.1:9000/db", []string{"S3cr3tPw"}, "clickhous://u:xxxxx@127.0.0.1:9000/db"},
	{"clickhouse://u:S3cr3tPw@h:9000/db", []string{"S3cr3tPw"}, "clickhouse://u:xxxxx@h:9000/db"},
	{"CLICKHOUSE://u:S3cr3tPw@h:9000/db", []string{"S3cr3tPw"}, "clickhouse://u:xxxxx@h:9000/db"},
	{"clickhouse://h:9000/db?password=S3cr3tPw", []string{"S3cr3tPw"}, "clickhouse://h:9000/db?password=xxxxx"},
	{"clickhouse://h:9000/db?secure=true&PASSWORD=S3cr3tPw", []string{"S3cr3tPw"}, "clickhouse://h:9000/db?secure=true&PASSWORD=xxxxx"},
	{"clickhouse://h:9000/db?pass%77ord=S3cr3tPw", []string{"S3cr3tPw"}, "clickhouse://h:9000/db?pass%77ord=xxxxx"},
	{"clickhouse://h:9000/db?password=S3cr%3D3tPw", []string{"S3cr%3D3tPw", "S3cr=3tPw", "3tPw"}, ""},
	{"clickhouse://h:9000/db?password=S3cr&3tPw&debug=false", []string{"S3cr", "3tPw"}, "clickhouse://h:9000/db?password=xxxxx&debug=false"},
	{"clickhouse://h/db?x=1?password=S3cr3tPw", []string{"S3cr3tPw"}, ""},
	{"chdb:///data/dir?database=x&token=S3cr3tPw", []string{"S3cr3tPw"}, "chdb:///data/dir?database=x&token=xxxxx"},
	{"clickhouse://h/db?access_key=S3cr3tPw&secret_key=0therS3cret&api_token=T0kenS3cret", []string{"S3cr3tPw", "0therS3cret", "T0kenS3cret"}, ""},
	{"clickhouse://u:S3cr3tPw@h:9000/db?password=0therS3cret", []string{"S3cr3tPw", "0therS3cret"}, "clickhouse://u:xxxxx@h:9000/db?password=xxxxx"},
	{"clickhouse://h/db?http_proxy=http%3A%2F%2Fpu%3AProxyS3cret%40proxy%3A3128", []string{"ProxyS3cret"}, ""},
	{"clickhouse://u:S3cr3t%2FPw@h:9000/db", []string{"S3cr3t%2FPw", "S3cr3t/Pw", "S3cr3t"}, "clickhouse://u:xxxxx@h:9000/db"},
	{"clickhouse://u:S3cr3t%40Pw@h:9000/db", []string{"S3cr3t%40Pw", "S3cr3t@Pw", "S3cr3t"}, "clickhouse://u:xxxxx@h:9000/db"},
	{"clickhouse://u:%ZZS3cr3tPw@h/db", []string{"S3cr3tPw"}, ""},
	// Unescaped '/', '?', '#', '@' in the password: the parsers cut it elsewhere.
	{"clickhouse://u:S3cr/3tPw@h:9000/db", []string{"S3cr", "3tPw"}, "clickhouse://xxxxx@h:9000/db"},
	{"clickhouse://u:12/S3cr3tPw@h/db", []string{"S3cr3tPw", "12/S3"}, "clickhouse://xxxxx@h/db"},
	{"clickhouse://u:12?S3cr3tPw@h/db", []string{"S3cr3tPw"}, "clickhouse://xxxxx"},
	{"clickhouse://u:12#S3cr3tPw@h/db", []string{"S3cr3tPw"}, "clickhouse://xxxxx"},
	{"clickhouse://h:9000/db?password=S3cr@3tPw", []string{"S3cr", "3tPw"}, "clickhouse://xxxxx"},
	{"clickhouse://u:S3cr@3tPw@h/db", []string{"S3cr", "3tPw"}, "clickhouse://u:xxxxx@h/db"},
	{"clickhouse://u:S3cr3tPw@@h/db", []string{"S3cr3tPw"}, ""},
	{"clickhouse://u:S3cr3tPw@h/db#frag", []string{"S3cr3tPw", "frag"}, "clickhouse://u:xxxxx@h/db#xxxxx"},
	{"clickhouse://h/db#S3cr3tPw", []string{"S3cr3tPw"}, "clickhouse://h/db#xxxxx"},
	// Unicode: net/url refuses it in user info, the redaction must not echo it either way.
	{"clickhouse://u:pässwörd-S3cr3t@h:9000/db", []string{"pässwörd", "S3cr3t"}, "clickhouse://xxxxx@h:9000/db"},
	{"clickhouse://u:%C3%A4S3cr3t@h:9000/db", []string{"äS3cr3t", "S3cr3t"}, "clickhouse://u:xxxxx@h:9000/db"},
	{"clickhouse://h:9000/db?password=p%C3%A4ssS3cr3t", []string{"S3cr3t", "pässS3cr3t"}, "clickhouse://h:9000/db?password=xxxxx"},
	// Not parsable at all.
	{"clickhouse://u:S3cr3tPw@h:9000/db\n", []string{"S3cr3tPw"}, "clickhouse://<unparsable>"},
	{"clickhouse://u:S3cr3tPw@[::1/db", []string{"S3cr3tPw"}, "clickhouse://<unparsable>"},
	{"clickhouse://u:S3cr3tPw@h:notaport/db", []string{"S3cr3tPw"}, "clickhouse://<unparsable>"},
	{"clickhouse:u:S3cr3tPw@h", []string{"S3cr3tPw"}, Unparsable},
	{"u:S3cr3tPw@h:9000", []string{"S3cr3tPw"}, Unparsable},
	{"S3cr3tPw", []string{"S3cr3tPw"}, Unparsable},
	{"S3cr3tPw://h", nil, "s3cr3tpw://h"},
	{"", nil, Unparsable},
}

func TestDSNNeverEchoesSecrets(t *testing.T) {
	for _, c := range hostileDSNs {
		t.Run(c.dsn, func(t *testing.T) {
			got := DSN(c.dsn)
			for _, s := range c.secrets {
				if strings.Contains(got, s) {
					t.Errorf("DSN(%q) = %q shows %q", c.dsn, got, s)
				}
			}
			if c.want != "" && got != c.want {
				t.Errorf("DSN(%q) = %q, want %q", c.dsn, got, c.want)
			}
			if len(c.secrets) > 0 && !Leaks("error: "+c.dsn+" refused", c.dsn) {
				t.Errorf("Leaks does not find the secrets of %q in a message that quotes it (Secrets = %q)", c.dsn, Secrets(c.dsn))
			}
			if Leaks(got, c.dsn) {
				t.Errorf("Leaks(DSN(%q) = %q) = true: the redaction keeps one of %q", c.dsn, got, Secrets(c.dsn))
			}
		})
	}
}

// A DSN without credentials comes back as it was, so that logs stay useful.
func TestDSNKeepsWhatIsNotSecret(t *testing.T) {
	for _, dsn := range []string{
		"clickhouse://h:9000/db",
		"clickhouse://u@h:9000/db",
		"clickhouse://h1:9000,h2:9000/metrics_1?secure=true&skip_verify=false&dial_timeout=5s",
		"chdb:///abs/dir?database=x",
		"chdb://rel/dir",
		"chdb:///data/a@b",
	} {
		if got := DSN(dsn); got != dsn {
			t.Errorf("DSN(%q) = %q, want it unchanged", dsn, got)
		}
	}
}

func TestAmbiguous(t *testing.T) {
	for dsn, want := range map[string]bool{
		"clickhouse://u:p@h/db":                             false,
		"clickhouse://u@h/db?x=a@b":                         false, // no ':' before the '@': no password
		"clickhouse://h:9000/db?user=a@b":                   true,  // ':' of the port, but who can tell
		"clickhouse://u:p@h/db?http_proxy=http://a:b@proxy": true,
		"clickhouse://u:12/pw@h/db":                         true,
		"clickhouse://u:pw?x@h/db":                          true,
		"clickhouse://u:p%40w@h/db":                         false,
		"chdb:///data/dir":                                  false,
	} {
		if got := Ambiguous(dsn); got != want {
			t.Errorf("Ambiguous(%q) = %v, want %v", dsn, got, want)
		}
	}
}

// FuzzDSN builds DSNs with a password in the user info and in ?password= from arbitrary parts
// and checks that neither shows in the redaction, unless it is also a part of what may show.
func FuzzDSN(f *testing.F) {
	f.Add("clickhouse", "u", "S3cr3tPw", "h:9000", "0therS3cret")
	f.Add("clickhouse", "u", "S3/cr?et#pw", "h", "a&b=c")
	f.Add("chdb", "", "pässwörd", "[::1", "%ZZ")
	f.Add("clickhouse", "u@x", "pw@pw", "h?x", "q@r:s")
	f.Fuzz(func(t *testing.T, scheme, user, pass, host, qv string) {
		dsn := scheme + "://" + user + ":" + pass + "@" + host + "/db?password=" + qv
		got := DSN(dsn)
		public := strings.ToLower(scheme) + "://" + user + "@" + host + "/db?password=" + Mask + "#<unparsable>" + Unparsable
		if strings.Contains(strings.ToLower(scheme), "xxxxx") {
			return // the scheme itself
		}
		// The driver's password parameter ends at the first '&'; what follows is a parameter of
		// its own when it starts with a name, and is masked otherwise.
		qpass, qrest, _ := strings.Cut(qv, "&")
		public += "&" + qrest
		for _, secret := range []string{pass, qpass} {
			if len(secret) >= 4 && strings.Contains(got, secret) && !strings.Contains(public, secret) {
				t.Errorf("DSN(%q) = %q shows %q", dsn, got, secret)
			}
		}
	})
}
