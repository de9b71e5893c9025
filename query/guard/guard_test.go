package guard_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query/guard"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// Every statement of the shared hostile list is decided as the list says, on the engine's parse.
func TestHostileSQL(t *testing.T) {
	st := testenv.CHDB(t)
	dir := testenv.CanaryDir(t)
	p := guard.Policy{Database: st.Database()}
	for _, c := range testenv.HostileSQL(t, st.Database(), dir) {
		_, err := guard.Check(context.Background(), st, c.SQL, nil, p)
		switch {
		case c.Refuse && err == nil:
			t.Errorf("accepted %q", c.SQL)
		case c.Refuse && !errors.Is(err, guard.ErrRefused):
			t.Errorf("%q: %v, want ErrRefused", c.SQL, err)
		case !c.Refuse && err != nil:
			t.Errorf("refused %q: %v", c.SQL, err)
		}
	}
}

func TestRefusalsSayWhy(t *testing.T) {
	st := testenv.CHDB(t)
	p := guard.Policy{Database: st.Database()}
	for sql, want := range map[string]string{
		"SELECT 1 SETTINGS readonly = 0":            "SETTINGS are not allowed",
		"SELECT * FROM file('x', 'LineAsString')":   "table function file reads outside the database",
		"SELECT file('x')":                          "function file reads outside the database",
		"SELECT * FROM system.users":                "system.users is not readable here",
		"SELECT * FROM other.t":                     "outside the " + st.Database() + " database",
		"SELECT 1; SELECT 2":                        "only one SELECT statement",
		"SELECT 1 INTO OUTFILE 'x'":                 "only one SELECT statement",
		"SELECT 1 WHERE 1 IN system.query_log":      "system.query_log is not readable here",
		"SELECT dictGetString('d', 'a', 1)":         "function dictGetString reads outside",
		"SELECT * FROM numbers(2) AS n, zeros(1) z": "",
	} {
		_, err := guard.Check(context.Background(), st, sql, nil, p)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", sql, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want it to say %q", sql, err, want)
		}
	}
}

func TestParseTree(t *testing.T) {
	good := "SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery (children 1)\n   ExpressionList (children 2)\n    Identifier a b (alias x y)\n    Literal 'it\\'s'"
	root, err := guard.ParseTree(good)
	if err != nil {
		t.Fatal(err)
	}
	id := root.Children[0].Children[0].Children[0].Children[0]
	if id.Type != "Identifier" || id.Arg != "a b" || id.Alias != "x y" {
		t.Errorf("identifier node %+v", id)
	}
	for name, bad := range map[string]string{
		"count too high":   "SelectWithUnionQuery (children 2)\n ExpressionList",
		"count too low":    "SelectWithUnionQuery (children 1)\n ExpressionList\n ExpressionList",
		"undeclared child": "SelectWithUnionQuery\n ExpressionList",
		"depth jump":       "SelectWithUnionQuery (children 1)\n   ExpressionList",
		"two roots":        "SelectWithUnionQuery\nSelectWithUnionQuery",
		"not a node":       "SelectWithUnionQuery (children 1)\n 'x'",
		"empty":            "",
	} {
		if _, err := guard.ParseTree(bad); err == nil {
			t.Errorf("%s: parsed %q", name, bad)
		}
	}
}

func TestCheckTreeRefusesUnknownNodes(t *testing.T) {
	tree := "SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  InsertQuery"
	if err := guard.CheckTree(tree, guard.Policy{Database: "g"}); !errors.Is(err, guard.ErrRefused) {
		t.Errorf("unknown node: %v", err)
	}
	if err := guard.CheckTree("InsertQuery", guard.Policy{Database: "g"}); !errors.Is(err, guard.ErrRefused) {
		t.Errorf("insert root: %v", err)
	}
}

// The tree reader and the policy take any text without panicking, and never accept a tree whose
// structure disagrees with the engine's child counts.
func FuzzCheckTree(f *testing.F) {
	f.Add("SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery (children 1)\n   ExpressionList (children 1)\n    Literal UInt64_1")
	f.Add("SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery (children 2)\n   ExpressionList (children 1)\n    Asterisk\n   TablesInSelectQuery (children 1)\n    TablesInSelectQueryElement (children 1)\n     TableExpression (children 1)\n      Function file (children 1)\n       ExpressionList (children 1)\n        Literal 'a'")
	f.Add("SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  Set")
	f.Add("Identifier x (alias y) (children 1)\n Identifier z")
	f.Fuzz(func(t *testing.T, tree string) {
		err := guard.CheckTree(tree, guard.Policy{Database: "g"})
		if err == nil {
			if _, perr := guard.ParseTree(tree); perr != nil {
				t.Fatalf("accepted a tree that does not parse: %v", perr)
			}
			if strings.Contains(tree, "Set") && strings.Contains("\n"+tree, " Set\n") {
				t.Fatalf("accepted SETTINGS: %q", tree)
			}
		}
	})
}
