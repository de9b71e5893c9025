package deploy_test

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/seed"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// usersXML is deploy/clickhouse/users.d/gpufleet.xml: the server's users.d file compose mounts.
const usersXML = "clickhouse/users.d/gpufleet.xml"

// xnode is any element of a ClickHouse configuration file, whose element names are the users' and
// profiles' own names.
type xnode struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Nodes   []xnode    `xml:",any"`
}

func (n xnode) child(name string) (xnode, bool) {
	for _, c := range n.Nodes {
		if c.XMLName.Local == name {
			return c, true
		}
	}
	return xnode{}, false
}

func (n xnode) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// chUser is one user of the users file.
type chUser struct {
	Name        string
	PasswordEnv string   // <password from_env=…>
	Profile     string   // <profile>
	Grants      []string // <grants><query>…
	Networks    []string
	Removed     bool // <name remove="remove"/>
}

// chUsersFile is the users file as the server reads it: its users and its profiles' settings and
// constraints.
type chUsersFile struct {
	Root     xnode
	Users    map[string]chUser
	Profiles map[string]xnode
}

func readUsersXML(t *testing.T) chUsersFile {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(usersXML))
	if err != nil {
		t.Fatal(err)
	}
	var root xnode
	if err := xml.Unmarshal(b, &root); err != nil {
		t.Fatalf("%s: %v", usersXML, err)
	}
	if root.XMLName.Local != "clickhouse" {
		t.Fatalf("%s: root element <%s>, want <clickhouse>", usersXML, root.XMLName.Local)
	}
	f := chUsersFile{Root: root, Users: map[string]chUser{}, Profiles: map[string]xnode{}}
	if ps, ok := root.child("profiles"); ok {
		for _, p := range ps.Nodes {
			f.Profiles[p.XMLName.Local] = p
		}
	}
	us, ok := root.child("users")
	if !ok {
		t.Fatalf("%s: no <users>", usersXML)
	}
	for _, u := range us.Nodes {
		cu := chUser{Name: u.XMLName.Local, Removed: u.attr("remove") != ""}
		if pw, ok := u.child("password"); ok {
			cu.PasswordEnv = pw.attr("from_env")
		}
		if p, ok := u.child("profile"); ok {
			cu.Profile = strings.TrimSpace(p.Text)
		}
		if g, ok := u.child("grants"); ok {
			for _, q := range g.Nodes {
				cu.Grants = append(cu.Grants, strings.Join(strings.Fields(q.Text), " "))
			}
		}
		if n, ok := u.child("networks"); ok {
			for _, ip := range n.Nodes {
				cu.Networks = append(cu.Networks, strings.TrimSpace(ip.Text))
			}
		}
		f.Users[cu.Name] = cu
	}
	return f
}

// The users file's grants and profiles, enforced by a real engine: chDB with the users file as its
// users config. chDB has no writable access storage and no EXECUTE AS (its embedded server never
// sets up access control from a main config), so CREATE USER / GRANT statements cannot be applied
// to it; what it does load is a users.xml, with its grants, profiles and constraints, and it
// enforces them on its session, which always logs in as "default". So each job runs in a child
// process of its own on one shared data directory, in whose users.xml the job's user from
// deploy/clickhouse/users.d/gpufleet.xml is renamed to default and its password emptied —
// everything else (grants, profile, constraints) verbatim. Order matters: migrate makes the schema
// the others use.
//
// One test-only grant is added: ingest's chDB store opens with CREATE DATABASE IF NOT EXISTS (the
// server transport does not), so its job gets CREATE DATABASE on gpufleet, which implies nothing
// the refusals below test. The reader's readonly = 2 profile refuses that statement and chDB's own
// read-only session (SET readonly = 1), so its job talks to libchdb directly (rawCHDB), as the
// server transport (chserver) does: settings with each query, never readonly itself.
func TestClickHouseGrants(t *testing.T) {
	lib := testenv.LibCHDB(t)
	users := readUsersXML(t)
	raw, err := os.ReadFile(filepath.FromSlash(usersXML))
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	for _, job := range []struct{ name, user, extraGrant string }{
		{"migrate", "gpufleet_migrate", ""},
		{"ingest", "gpufleet_ingest", "GRANT CREATE DATABASE ON gpufleet.*"},
		{"reader", "gpufleet_reader", ""},
	} {
		if _, ok := users.Users[job.user]; !ok {
			t.Fatalf("%s: no user %s", usersXML, job.user)
		}
		wd := t.TempDir()
		usersFile := filepath.Join(wd, "users.xml")
		if err := os.WriteFile(usersFile, []byte(asDefaultUser(t, string(raw), users.Users[job.user], job.extraGrant)), 0o600); err != nil {
			t.Fatal(err)
		}
		// The engine reads its data directory's configuration when the job's process starts it.
		config := "<clickhouse><users_config>" + usersFile + "</users_config></clickhouse>\n"
		if err := os.WriteFile(filepath.Join(data, chdb.ConfigFile), []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run", "^TestClickHouseGrantsJob$", "-test.v", "-test.count=1")
		cmd.Dir = wd
		cmd.Env = append(os.Environ(), "GPUFLEET_GRANTS_JOB="+job.name, "GPUFLEET_GRANTS_DATA="+data, chdb.LibEnv+"="+lib)
		for _, u := range users.Users {
			if u.PasswordEnv != "" { // the other users' from_env must resolve for the file to load
				cmd.Env = append(cmd.Env, u.PasswordEnv+"=unused-"+u.Name)
			}
		}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestClickHouseGrantsJob") {
			t.Errorf("%s as %s: %v\n%s", job.name, job.user, err, out)
		}
	}
}

// asDefaultUser rewrites the users file so that u is the user chDB's session logs in as: u renamed
// to default with no password, the file's removal of default dropped, extra appended to u's grants,
// and the stock default profile and quota the file's users name.
func asDefaultUser(t *testing.T, file string, u chUser, extra string) string {
	t.Helper()
	i := strings.Index(file, "<users>")
	head, body := file[:i], file[i:]
	for _, r := range []struct{ old, new string }{
		{`<default remove="remove"/>`, ""},
		{"<" + u.Name + ">", "<default>"},
		{"</" + u.Name + ">", "</default>"},
		{`<password from_env="` + u.PasswordEnv + `"/>`, "<password></password>"},
	} {
		if !strings.Contains(body, r.old) {
			t.Fatalf("%s: no %q in <users>", usersXML, r.old)
		}
		body = strings.Replace(body, r.old, r.new, 1)
	}
	if extra != "" {
		j := strings.Index(body, "<default>")
		k := j + strings.Index(body[j:], "</grants>")
		body = body[:k] + "<query>" + extra + "</query>" + body[k:]
	}
	head = strings.Replace(head, "<profiles>", "<profiles><default/>", 1)
	body = strings.Replace(body, "</clickhouse>", "<quotas><default/></quotas></clickhouse>", 1)
	return head + body
}

// grantCase is a statement a job's user must be able to run (refusal "") or must be refused, the
// engine's error naming refusal (ACCESS_DENIED: the grants; READONLY or
// SETTING_CONSTRAINT_VIOLATION: the profile).
type grantCase struct {
	sql, refusal string
}

func checkGrantCases(t *testing.T, run func(string) error, cases []grantCase) {
	t.Helper()
	for _, c := range cases {
		err := run(c.sql)
		switch {
		case c.refusal == "" && err != nil:
			t.Errorf("%s: refused: %v", c.sql, err)
		case c.refusal != "" && err == nil:
			t.Errorf("%s: allowed, want refused (%s)", c.sql, c.refusal)
		case c.refusal != "" && !strings.Contains(err.Error(), c.refusal):
			t.Errorf("%s: refused for another reason than %s: %v", c.sql, c.refusal, err)
		}
	}
}

// What no gpufleet user may do, whatever its job.
var refusedToAll = []grantCase{
	{"CREATE DATABASE other", "ACCESS_DENIED"},
	{"SELECT * FROM file('/etc/passwd', 'LineAsString')", "ACCESS_DENIED"},
	{"SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')", "ACCESS_DENIED"},
	{"SELECT name FROM system.users", "ACCESS_DENIED"},
	{"DROP DATABASE gpufleet", "ACCESS_DENIED"},
}

// TestClickHouseGrantsJob is one job of TestClickHouseGrants, in its child process.
func TestClickHouseGrantsJob(t *testing.T) {
	job, data := os.Getenv("GPUFLEET_GRANTS_JOB"), os.Getenv("GPUFLEET_GRANTS_DATA")
	if job == "" {
		t.Skip("run by TestClickHouseGrants")
	}
	ctx := context.Background()
	if job == "reader" {
		readerJob(t, data)
		return
	}
	st, err := chdb.Open(data, "gpufleet", os.Getenv(chdb.LibEnv))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	exec := func(q string) error { return st.Exec(ctx, q) }
	switch job {
	case "migrate":
		if _, err := migrate.Apply(ctx, st, nil); err != nil {
			t.Fatalf("migrate.Apply as gpufleet_migrate: %v", err)
		}
		if err := migrate.SetRetention(ctx, st, migrate.Retention{SamplesDays: 30, EventsDays: 90}, migrate.Options{}); err != nil {
			t.Fatalf("migrate.SetRetention as gpufleet_migrate: %v", err)
		}
		checkGrantCases(t, exec, append([]grantCase{
			// A later migration's kinds of statement: views are dropped and made again.
			{"CREATE TABLE gpufleet.grants_probe (x UInt8) ENGINE = MergeTree ORDER BY x", ""},
			{"CREATE MATERIALIZED VIEW gpufleet.grants_probe_mv TO gpufleet.grants_probe AS SELECT gpu AS x FROM gpufleet.gpu_samples", ""},
			{"DROP VIEW gpufleet.grants_probe_mv", ""},
			{"DROP TABLE gpufleet.grants_probe", ""},
			{"CREATE USER mallory", "ACCESS_DENIED"},
			{"GRANT SELECT ON gpufleet.* TO gpufleet_reader", "ACCESS_DENIED"},
		}, refusedToAll...))
	case "ingest":
		if p, err := migrate.Pending(ctx, st); err != nil || len(p) != 0 {
			t.Fatalf("migrate.Pending as gpufleet_ingest (ingest's start-up check): %v %v", p, err)
		}
		// The native-block insert path ingest's batches take (store.Insert).
		end := time.Now().UTC().Truncate(time.Minute)
		if _, err := (seed.Fleet{Seed: 1, Nodes: 2, GPUsPerNode: 2, From: end.Add(-time.Minute), To: end, Step: 10 * time.Second}).Write(ctx, st); err != nil {
			t.Fatalf("insert gpu_samples as gpufleet_ingest: %v", err)
		}
		checkGrantCases(t, exec, append([]grantCase{
			{"INSERT INTO gpufleet.ingest_intents (group_id, topic, partition, first_offset, last_offset) VALUES ('g', 'gpu.samples', 0, 0, 9)", ""},
			{"INSERT INTO gpufleet.ingest_gaps (agent_id, partition, expected_seq, seen_seq, missing) VALUES ('a', 0, 1, 3, 2)", ""},
			// --fold (folds.go): a fold's range, its rows into gpu_1m and gpu_1h, and the replay's lookup.
			{"INSERT INTO gpufleet.ingest_folds (group_id, topic, partition, first_offset, last_offset) VALUES ('g', 'gpu.samples', 0, 0, 9)", ""},
			{"INSERT INTO gpufleet.gpu_1m (t, cluster, node, uuid, samples) VALUES (now(), 'c', 'n', 'u', 1)", ""},
			// gpu_1h's fold through its feed, whose view casts the digest bytes into gpu_1h.
			{"INSERT INTO gpufleet.gpu_1h_fold (t, cluster, node, uuid, samples, power_w_q) VALUES (now(), 'c', 'n', 'u', 1, unhex('0100'))", ""},
			{"SELECT last_offset FROM gpufleet.ingest_folds WHERE group_id = 'g' AND topic = 'gpu.samples' AND partition = 0 AND first_offset <= 5 AND last_offset >= 5 ORDER BY last_offset DESC LIMIT 1", ""},
			// ingest's replay reads (intents.go, repeats.go).
			{"SELECT last_offset, toInt64(repeats_known), repeats FROM gpufleet.ingest_intents WHERE group_id = 'g' AND topic = 'gpu.samples' AND partition = 0 AND first_offset <= 5 AND last_offset >= 5 ORDER BY last_offset DESC LIMIT 1", ""},
			{"SELECT DISTINCT cluster, node, agent_id, seq, toUnixTimestamp64Milli(time) FROM gpufleet.gpu_samples WHERE time >= now() - INTERVAL 1 HOUR", ""},
			{"CREATE TABLE gpufleet.grants_probe (x UInt8) ENGINE = MergeTree ORDER BY x", "ACCESS_DENIED"},
			{"ALTER TABLE gpufleet.gpu_samples ADD COLUMN grants_probe UInt8", "ACCESS_DENIED"},
			{"ALTER TABLE gpufleet.gpu_samples DELETE WHERE 1", "ACCESS_DENIED"},
			{"TRUNCATE TABLE gpufleet.gpu_samples", "ACCESS_DENIED"},
			{"DROP TABLE gpufleet.gpu_samples", "ACCESS_DENIED"},
			{"DROP VIEW gpufleet.gpu_1m_mv", "ACCESS_DENIED"},
		}, refusedToAll...))
	default:
		t.Fatalf("unknown job %q", job)
	}
}

// readerJob is the read path as the server transport runs it as gpufleet_reader: each query with
// store.Limits' settings but readonly (the profile's, 2), and the statement check's formatQuery and
// EXPLAIN AST.
func readerJob(t *testing.T, data string) {
	db, err := openRawCHDB(os.Getenv(chdb.LibEnv), data)
	if err != nil {
		t.Fatal(err)
	}
	var settings []string
	for _, st := range store.DefaultLimits().Settings() {
		if st.Name != "readonly" {
			settings = append(settings, st.Name+" = "+st.Value)
		}
	}
	limits := " SETTINGS " + strings.Join(settings, ", ")
	if got, err := db.query("SELECT getSetting('readonly')"); err != nil || strings.TrimSpace(got) != "2" {
		t.Fatalf("reader's readonly = %q (%v), want the profile's 2", got, err)
	}
	if got, err := db.query("SELECT count() FROM gpufleet.gpu_samples" + limits); err != nil || strings.TrimSpace(got) == "0" {
		t.Fatalf("reader reads gpu_samples: %q %v (want the ingest job's rows)", got, err)
	}
	run := func(q string) error { _, err := db.query(q); return err }
	checkGrantCases(t, run, append([]grantCase{
		{"SELECT node, avg(gpu_util) FROM gpufleet.gpu_samples GROUP BY node" + limits, ""},
		{"SELECT formatQuery('SELECT 1 FROM gpufleet.gpu_samples')", ""},
		{"EXPLAIN AST SELECT node FROM gpufleet.gpu_samples", ""},
		{"SELECT 1 SETTINGS max_execution_time = 300", ""},
		{"SELECT 1 SETTINGS max_result_rows = 20000000", "SETTING_CONSTRAINT_VIOLATION"},
		{"SELECT 1 SETTINGS max_execution_time = 301", "SETTING_CONSTRAINT_VIOLATION"},
		{"SET readonly = 0", "READONLY"},
		// The grants refuse these before the profile is asked (readonly = 2 would too).
		{"INSERT INTO gpufleet.ingest_gaps (agent_id) VALUES ('x')", "ACCESS_DENIED"},
		{"CREATE TABLE gpufleet.grants_probe (x UInt8) ENGINE = Memory", "ACCESS_DENIED"},
		{"DROP TABLE gpufleet.ingest_gaps", "ACCESS_DENIED"},
		{"CREATE TEMPORARY TABLE grants_probe (x UInt8)", "ACCESS_DENIED"},
	}, refusedToAll...))
}

// rawCHDB is one libchdb connection without internal/store/chdb's session set-up: the only way to
// hold a session whose profile forbids both CREATE DATABASE and SET readonly.
type rawCHDB struct {
	conn          unsafe.Pointer
	queryN        func(conn unsafe.Pointer, query *byte, queryLen uintptr, format *byte, formatLen uintptr) unsafe.Pointer
	resultBuffer  func(res unsafe.Pointer) *byte
	resultLength  func(res unsafe.Pointer) uintptr
	resultError   func(res unsafe.Pointer) *byte
	destroyResult func(res unsafe.Pointer)
}

func openRawCHDB(lib, dir string) (*rawCHDB, error) {
	h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("dlopen %s: %w", lib, err)
	}
	var connect func(argc int32, argv []*byte) *unsafe.Pointer
	r := &rawCHDB{}
	for name, fn := range map[string]any{
		"chdb_connect": &connect, "chdb_query_n": &r.queryN, "chdb_result_buffer": &r.resultBuffer,
		"chdb_result_length": &r.resultLength, "chdb_result_error": &r.resultError, "chdb_destroy_query_result": &r.destroyResult,
	} {
		purego.RegisterLibFunc(fn, h, name)
	}
	// As the store names it: the data directory's configuration, not the working directory's.
	args := []string{"gpufleet-test", "--path=" + dir, "--config-file=" + filepath.Join(dir, chdb.ConfigFile)}
	argv := make([]*byte, len(args))
	for i, a := range args {
		b := append([]byte(a), 0)
		argv[i] = &b[0]
	}
	p := connect(int32(len(argv)), argv)
	if p == nil || *p == nil {
		return nil, fmt.Errorf("chdb_connect %s failed", dir)
	}
	r.conn = *p
	return r, nil
}

func (r *rawCHDB) query(q string) (string, error) {
	qb, fb := []byte(q), []byte("TabSeparated")
	res := r.queryN(r.conn, &qb[0], uintptr(len(qb)), &fb[0], uintptr(len(fb)))
	if res == nil {
		return "", fmt.Errorf("chdb_query_n returned nothing")
	}
	defer r.destroyResult(res)
	if e := r.resultError(res); e != nil {
		return "", fmt.Errorf("chdb: %s", cstr(e))
	}
	n := r.resultLength(res)
	if n == 0 {
		return "", nil
	}
	return string(unsafe.Slice(r.resultBuffer(res), n)), nil
}

func cstr(p *byte) string {
	var b []byte
	for q := unsafe.Pointer(p); *(*byte)(q) != 0; q = unsafe.Add(q, 1) {
		b = append(b, *(*byte)(q))
	}
	return string(b)
}

// The SQL files (for a server whose users are managed with CREATE USER) say what the users file
// says, statement for statement as chDB's own parser formats them: the same users, profile and
// grants, so the grants TestClickHouseGrants runs are also the SQL's.
func TestClickHouseSQLMatchesUsersFile(t *testing.T) {
	st := testenv.CHDB(t)
	ctx := context.Background()
	format := func(file, q string) string {
		t.Helper()
		r, err := st.QueryWith(ctx, "SELECT formatQuery({q:String})", store.Params{"q": store.StringParam(q)})
		if err != nil || len(r.Rows) != 1 {
			t.Fatalf("%s: ClickHouse does not parse %q: %v", file, q, err)
		}
		return r.Rows[0][0].(string)
	}
	users := readUsersXML(t)
	files := map[string]string{"gpufleet_migrate": "migrate.sql", "gpufleet_ingest": "ingest.sql", "gpufleet_reader": "reader.sql"}
	for name, u := range users.Users {
		if _, ok := files[name]; !ok && !u.Removed {
			t.Errorf("%s: user %s has no SQL file", usersXML, name)
		}
	}
	for user, file := range files {
		t.Run(user, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("clickhouse", file))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, q := range sqlStatements(string(b)) {
				got = append(got, format(file, q))
			}
			u, ok := users.Users[user]
			if !ok {
				t.Fatalf("%s: no user %s", usersXML, user)
			}
			var want []string
			create := "CREATE USER OR REPLACE " + user + " IDENTIFIED WITH sha256_password BY {password:String}"
			if u.Profile != "" && u.Profile != "default" {
				p, ok := users.Profiles[u.Profile]
				if !ok {
					t.Fatalf("%s: %s's profile %s is not defined", usersXML, user, u.Profile)
				}
				want = append(want, format(usersXML, profileSQL(t, u.Profile, p)))
				create += " SETTINGS PROFILE '" + u.Profile + "'"
			}
			want = append(want, format(usersXML, create))
			for _, g := range u.Grants {
				want = append(want, format(usersXML, g+" TO "+user))
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s says\n  %s\n%s says\n  %s", file, strings.Join(got, "\n  "), usersXML, strings.Join(want, "\n  "))
			}
		})
	}
}

// sqlStatements splits a SQL file on ';', without its -- comment lines.
func sqlStatements(file string) []string {
	var lines []string
	for l := range strings.SplitSeq(file, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	var out []string
	for q := range strings.SplitSeq(strings.Join(lines, "\n"), ";") {
		if q = strings.TrimSpace(q); q != "" {
			out = append(out, q)
		}
	}
	return out
}

// profileSQL is the CREATE SETTINGS PROFILE statement of a users file's profile, its settings in
// the file's order with their constraints.
func profileSQL(t *testing.T, name string, p xnode) string {
	t.Helper()
	constraints, _ := p.child("constraints")
	var settings []string
	for _, s := range p.Nodes {
		if s.XMLName.Local == "constraints" {
			continue
		}
		v := strings.TrimSpace(s.Text)
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			v = store.QuoteString(v)
		}
		item := s.XMLName.Local + " = " + v
		if c, ok := constraints.child(s.XMLName.Local); ok {
			for _, k := range c.Nodes {
				switch k.XMLName.Local {
				case "const", "readonly":
					item += " CONST"
				case "max":
					item += " MAX " + strings.TrimSpace(k.Text)
				case "min":
					item += " MIN " + strings.TrimSpace(k.Text)
				default:
					t.Fatalf("%s: profile %s: constraint <%s> this test cannot compare", usersXML, name, k.XMLName.Local)
				}
			}
		}
		settings = append(settings, item)
	}
	for _, c := range constraints.Nodes {
		if _, ok := p.child(c.XMLName.Local); !ok {
			t.Errorf("%s: profile %s constrains %s without setting it", usersXML, name, c.XMLName.Local)
		}
	}
	return "CREATE SETTINGS PROFILE OR REPLACE " + name + " SETTINGS " + strings.Join(settings, ", ")
}
