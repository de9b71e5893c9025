package schema_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// TestNoTableLiterals keeps the table and view names in one home: shipped Go code outside package
// schema (its subpackages, migrate among them, included) names them by schema's constants, so that renaming a table is an edit to
// names.go and a migration, and the compiler finds every use. It fails on a string literal that
// spells a name out, by these rules:
//
//   - A name with an underscore (gpu_samples, fleet_1m_mv, schema_migrations, ...) anywhere in a
//     literal as a whole word. Such a name is an identifier, never English, so any mention is of
//     the table: SQL, a table compared or passed by name, or a message or flag help that tells a
//     person which table, which must follow a rename as much as the SQL must. A longer identifier
//     that merely contains one (gpufleet_ingest_gaps_recorded_total) is not a mention.
//   - jobs, which is also an English word, only where it is the table: after an upper-case SQL
//     keyword that takes a table (FROM jobs, JOIN, INTO, TABLE, VIEW, EXISTS, TO), qualified by a
//     database (db.jobs, {db}.jobs, %s.jobs), or a whole literal passed as the table of a call named
//     Table or Insert (store.Table(db, "jobs"), st.Insert(ctx, "jobs", ...)). "its jobs are not
//     attributed" in a log message or a report called "jobs" is not the table.
//
// Not caught: a name assembled from pieces ("gpu_" + "1m"), SQL in lower case using jobs, and a
// literal "jobs" used as the table other than by a call named Table or Insert. Struct tags and
// import paths are not looked at; neither are tests, which may spell out what they check.
func TestNoTableLiterals(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	type hit struct {
		file string
		line int
		why  string
	}
	var found []hit
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "vendor" || d.Name() == "node_modules" ||
				d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		// The schema package itself is the home; its subpackages (migrate) are not exempt.
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") || filepath.Dir(rel) == "internal/schema" {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		lits, err := tableLiterals(rel, src)
		if err != nil {
			return err
		}
		for _, l := range lits {
			found = append(found, hit{rel, l.line, l.why})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(found, func(a, b hit) int {
		if c := strings.Compare(a.file, b.file); c != 0 {
			return c
		}
		return a.line - b.line
	})
	for _, h := range found {
		t.Errorf("%s:%d: %s; use internal/schema's name", h.file, h.line, h.why)
	}
}

// The rules on their own: what each catches and what it lets through.
func TestTableLiteralRules(t *testing.T) {
	for _, c := range []struct {
		expr string
		want bool
	}{
		{`store.Table(db, "gpu_1m")`, true},
		{`st.Insert(ctx, "jobs", b, "")`, true},
		{`store.Table(db, "jobs")`, true},
		{`"SELECT count() FROM jobs"`, true},
		{`"SELECT count() FROM " + db + ".jobs WHERE x"`, true},
		{`"INSERT INTO {db}.jobs (x) VALUES (1)"`, true},
		{`"DROP VIEW IF EXISTS %s.jobs_mv"`, true},
		{`"gpu_samples"`, true},
		{`"read ingest_intents: %w"`, true},
		{"`SELECT 1 FROM gpufleet.schema_migrations`", true},
		{`"gpufleet_ingest_gaps_recorded_total"`, false},
		{`"jobs"`, false}, // a report, a route, a word
		{`"its jobs are not attributed from cgroups"`, false},
		{`"GET /api/v1/jobs"`, false},
		{`"gpu_1m_lag"`, false},
		{`f("jobs")`, false},
	} {
		// Every source has a struct tag naming gpu_samples: tags are JSON or YAML keys, not tables.
		src := "package p\n\nvar _ = " + c.expr + "\n\ntype T struct {\n\tX int `json:\"gpu_samples\"`\n}\n"
		lits, err := tableLiterals("p.go", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if got := len(lits) > 0; got != c.want {
			t.Errorf("%s: flagged %v (%v), want %v", c.expr, got, lits, c.want)
		}
	}
}

var (
	// wordNames are the names with an underscore: identifiers, so any whole-word mention counts.
	wordNames = regexp.MustCompile(`\b(` + strings.Join(slices.DeleteFunc(schema.Names(), func(n string) bool {
		return !strings.Contains(n, "_")
	}), "|") + `)\b`)
	// sqlNames is jobs (and any name) where SQL puts a table: after a keyword or a database.
	sqlNames = regexp.MustCompile(`(?:\b(?:FROM|JOIN|INTO|TABLE|VIEW|EXISTS|TO)\s+(?:[\w{}%]+\.)?|(?:^|[\w}%])\.)(` +
		strings.Join(schema.Names(), "|") + `)\b`)
)

type tableLiteral struct {
	line int
	why  string
}

// tableLiterals returns the literals in Go source src that spell a table or view name.
func tableLiterals(path string, src []byte) ([]tableLiteral, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	skip := map[*ast.BasicLit]bool{}    // struct tags and import paths
	asTable := map[*ast.BasicLit]bool{} // arguments of Table(...) and Insert(...)
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.Field:
			if n.Tag != nil {
				skip[n.Tag] = true
			}
		case *ast.ImportSpec:
			skip[n.Path] = true
		case *ast.CallExpr:
			name := ""
			switch fn := n.Fun.(type) {
			case *ast.Ident:
				name = fn.Name
			case *ast.SelectorExpr:
				name = fn.Sel.Name
			}
			if name == "Table" || name == "Insert" {
				for _, a := range n.Args {
					if lit, ok := a.(*ast.BasicLit); ok {
						asTable[lit] = true
					}
				}
			}
		}
		return true
	})
	var out []tableLiteral
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING || skip[lit] {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			return true
		}
		why := ""
		switch {
		case asTable[lit] && slices.Contains(schema.Names(), s):
			why = "is passed as a table"
		case sqlNames.MatchString(s):
			why = "puts a table in SQL (" + sqlNames.FindString(s) + ")"
		case wordNames.MatchString(s):
			why = "mentions " + wordNames.FindString(s)
		default:
			return true
		}
		out = append(out, tableLiteral{fset.Position(lit.Pos()).Line, trim(lit.Value) + " " + why})
		return true
	})
	return out, nil
}

func trim(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}
