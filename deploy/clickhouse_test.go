package deploy_test

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
