// Package guard decides whether a user's SQL statement may run on gpufleet's read paths (raw SQL
// in Grafana, `gpufleet query --sql`, the HTTP API). The decision is made on ClickHouse's own
// parse of the statement (EXPLAIN AST of its formatQuery text, store.Parser), never on the text the
// user wrote: one SELECT, no SETTINGS anywhere, no table function or table that reaches outside the
// gpufleet database, no function that reads files or external dictionaries. The reader's session
// (readonly = 1, store.Limits) is the second line: what slips past here still cannot write.
package guard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gpufleet/gpufleet/internal/store"
)

// ErrRefused is what every refusal wraps.
var ErrRefused = errors.New("statement refused")

// Policy says what a statement may read.
type Policy struct {
	// Database is gpufleet's database: its tables may be read, qualified or not.
	Database string
	// SystemTables may be read as system.<name>; empty means DefaultSystemTables.
	SystemTables []string
}

// DefaultSystemTables are the system tables a dashboard may read: constants and the catalogue of
// tables and their storage. Not the query log, processes, users, grants, settings or disks.
var DefaultSystemTables = []string{"one", "numbers", "numbers_mt", "zeros", "zeros_mt", "databases", "tables", "columns", "parts"}

// tableFunctions may appear in FROM: they make rows out of nothing.
var tableFunctions = []string{"numbers", "numbers_mt", "zeros", "zeros_mt", "generateseries", "generate_series", "values"}

// deniedFunctions read outside the database (files, the network, dictionaries on external sources,
// other databases through a string) wherever they appear. Compared in lower case.
var deniedFunctions = []string{
	"file", "url", "urlcluster", "s3", "s3cluster", "gcs", "oss", "cosn", "hdfs", "hdfscluster", "azureblobstorage",
	"azureblobstoragecluster", "remote", "remotesecure", "cluster", "clusterallreplicas", "mysql", "postgresql",
	"sqlite", "mongodb", "redis", "odbc", "jdbc", "executable", "input", "dictionary", "merge", "loop", "format",
	"joinget", "joingetornull", "catboostevaluate", "modelevaluate", "filesystemavailable", "filesystemcapacity",
	"filesystemunreserved", "viewexplain", "viewifpermitted", "mergetreeindex", "iceberg", "deltalake", "hudi",
	"arrowflight", "ytsaurus", "fuzzjson", "fuzzquery", "getsetting", "getmacro", "getserversetting",
}

// deniedPrefixes deny function families: dictGet*, dictHas, icebergS3, deltaLakeAzure, …
var deniedPrefixes = []string{"dict", "iceberg", "deltalake", "hudi", "s3", "hdfs", "azure", "remote"}

// inFunctions take a table as their right-hand side: x IN db.table.
var inFunctions = []string{"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin", "globalnotnullin"}

// nodes are the syntax tree nodes a SELECT may contain; anything else is refused as unsupported
// rather than guessed about.
var nodes = []string{
	"SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery", "ExpressionList", "Literal", "Identifier",
	"TableIdentifier", "Function", "Asterisk", "QualifiedAsterisk", "ColumnsRegexpMatcher", "ColumnsListMatcher",
	"QualifiedColumnsRegexpMatcher", "QualifiedColumnsListMatcher", "ColumnsTransformerList",
	"ColumnsExceptTransformer", "ColumnsReplaceTransformer", "ColumnsReplaceTransformerReplacement",
	"ColumnsApplyTransformer", "TablesInSelectQuery", "TablesInSelectQueryElement", "TableExpression", "TableJoin",
	"ArrayJoin", "Subquery", "WithElement", "WindowListElement", "WindowDefinition", "OrderByElement",
	"InterpolateElement", "SampleRatio", "Set",
}

// Check parses sql with the store's engine and applies p. It returns the engine's canonical text,
// which is what the caller runs: the text that was checked, not the text that was sent.
func Check(ctx context.Context, ps store.Parser, sql string, params store.Params, p Policy) (string, error) {
	canonical, tree, err := ps.ParseSelect(ctx, sql, params)
	if err != nil {
		if ctx.Err() != nil {
			return "", err
		}
		if strings.Contains(err.Error(), "Cannot modify") { // the parse session refused a SETTINGS clause
			return "", refuse("SETTINGS are not allowed: the read path's limits are fixed (%v)", err)
		}
		return "", fmt.Errorf("%w: only one SELECT statement, without INTO OUTFILE or FORMAT, runs here: %v", ErrRefused, err)
	}
	if err := CheckTree(tree, p); err != nil {
		return "", err
	}
	return canonical, nil
}

// Node is one node of an EXPLAIN AST tree.
type Node struct {
	Type     string // SelectQuery, Function, TableIdentifier, …
	Arg      string // a Function's name, an identifier, a literal
	Alias    string
	Children []*Node
	declared int // the children the engine said the node has
}

// ParseTree reads EXPLAIN AST output: one node a line, indented one space a level, "Type[ arg][
// (alias a)][ (children n)]". It checks the structure against the engine's own child counts, so
// that text inside a name cannot pass for nodes.
func ParseTree(text string) (*Node, error) {
	var root *Node
	var stack []*Node
	for i, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		depth := len(line) - len(strings.TrimLeft(line, " "))
		n, err := parseLine(line[depth:])
		if err != nil {
			return nil, fmt.Errorf("syntax tree line %d: %w", i+1, err)
		}
		switch {
		case depth == 0 && root == nil:
			root = n
		case depth == 0 || depth > len(stack):
			return nil, fmt.Errorf("syntax tree line %d: unexpected depth %d", i+1, depth)
		default:
			parent := stack[depth-1]
			parent.Children = append(parent.Children, n)
		}
		stack = append(stack[:depth], n)
	}
	if root == nil {
		return nil, errors.New("empty syntax tree")
	}
	var verify func(*Node) error
	verify = func(n *Node) error {
		if len(n.Children) != n.declared {
			return fmt.Errorf("syntax tree: %s %s has %d children, the engine said %d", n.Type, n.Arg, len(n.Children), n.declared)
		}
		for _, c := range n.Children {
			if err := verify(c); err != nil {
				return err
			}
		}
		return nil
	}
	return root, verify(root)
}

func parseLine(s string) (*Node, error) {
	n := &Node{}
	if rest, ok := strings.CutSuffix(s, ")"); ok {
		if i := strings.LastIndex(rest, " (children "); i >= 0 {
			c, err := strconv.Atoi(rest[i+len(" (children "):])
			if err == nil && c > 0 {
				n.declared, s = c, rest[:i]
			}
		}
	}
	if rest, ok := strings.CutSuffix(s, ")"); ok {
		if i := strings.LastIndex(rest, " (alias "); i >= 0 {
			n.Alias, s = rest[i+len(" (alias "):], rest[:i]
		}
	}
	n.Type, n.Arg, _ = strings.Cut(s, " ")
	if n.Type == "" || strings.Trim(n.Type, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return nil, fmt.Errorf("not a node: %q", s)
	}
	return n, nil
}

// CheckTree applies p to an EXPLAIN AST tree.
func CheckTree(text string, p Policy) error {
	root, err := ParseTree(text)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if root.Type != "SelectWithUnionQuery" {
		return fmt.Errorf("%w: only SELECT statements run here, not %s", ErrRefused, root.Type)
	}
	for _, c := range root.Children {
		if c.Type != "ExpressionList" {
			return refuse("INTO OUTFILE and FORMAT are not allowed: the read path returns rows, it writes nothing")
		}
	}
	if len(p.SystemTables) == 0 {
		p.SystemTables = DefaultSystemTables
	}
	return p.walk(root, nil)
}

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

func (p Policy) walk(n, parent *Node) error {
	if !slices.Contains(nodes, n.Type) {
		return refuse("%s is not supported here", n.Type)
	}
	switch n.Type {
	case "Set":
		return refuse("SETTINGS are not allowed: the read path's limits are fixed")
	case "TableIdentifier", "Function":
		if !plainName(n.Arg) {
			return refuse("name %q: name tables and functions in plain ASCII (letters, digits, underscore, dots)", n.Arg)
		}
	}
	switch n.Type {
	case "TableIdentifier":
		if err := p.table(n.Arg); err != nil {
			return err
		}
	case "Function":
		name := strings.ToLower(n.Arg)
		if parent != nil && parent.Type == "TableExpression" {
			if !slices.Contains(tableFunctions, name) {
				return refuse("table function %s reads outside the database; allowed: %s", n.Arg, strings.Join(tableFunctions, ", "))
			}
		} else if slices.Contains(deniedFunctions, name) || hasPrefix(name, deniedPrefixes) {
			return refuse("function %s reads outside the database", n.Arg)
		}
		if slices.Contains(inFunctions, name) && len(n.Children) == 1 && len(n.Children[0].Children) == 2 {
			if rhs := n.Children[0].Children[1]; rhs.Type == "Identifier" && plainName(rhs.Arg) {
				if err := p.table(rhs.Arg); err != nil {
					return err
				}
			}
		}
	}
	for _, c := range n.Children {
		if err := p.walk(c, n); err != nil {
			return err
		}
	}
	return nil
}

// table accepts gpufleet's tables, the allowed system tables and unqualified names (a WITH name, or
// a table of the reader's database).
func (p Policy) table(name string) error {
	db, table, qualified := strings.Cut(name, ".")
	switch {
	case !qualified:
		return nil
	case strings.Contains(table, "."):
		return refuse("table %s: name a table as database.table", name)
	case db == p.Database:
		return nil
	case db == "system" && slices.Contains(p.SystemTables, table):
		return nil
	case db == "system":
		return refuse("system.%s is not readable here; allowed: system.%s", table, strings.Join(p.SystemTables, ", system."))
	}
	return refuse("table %s is outside the %s database", name, p.Database)
}

func plainName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
