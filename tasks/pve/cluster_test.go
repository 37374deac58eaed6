package pve

import (
	"context"
	"reflect"
	"testing"

	"github.com/phoenix-hv/phoenix/tasks"
	"github.com/phoenix-hv/phoenix/transport/fake"
)

// The files as pmxcfs prints them (pve-more.md §3.2): hash order, the last
// entry's brace on its line, an empty line before the end.
const (
	vmList2 = `{
"version": 42,
"ids": {
"8102": { "node": "pve2", "type": "qemu", "version": 9 },
"100": { "node": "pve1", "type": "lxc", "version": 7 },
"9000": { "node": "pve1", "type": "qemu", "version": 3 }}

}
`
	vmListEmpty = "{\n\"version\": 1\n\n}\n"
	members2    = `{
"nodename": "pve1",
"version": 5,
"cluster": { "name": "lab", "version": 3, "nodes": 2, "quorate": 1 },
"nodelist": {
  "pve1": { "id": 1, "online": 1, "ip": "10.0.0.11"},
  "pve2": { "id": 2, "online": 0}
  }
}
`
	membersAlone = "{\n\"nodename\": \"pve\",\n\"version\": 2\n}\n"
	names2       = "/etc/pve/nodes/pve1/qemu-server/9000.conf debian-12-cloud\n/etc/pve/nodes/pve2/qemu-server/8102.conf web02\n"
)

func TestReadCluster(t *testing.T) {
	tests := []struct {
		name                   string
		vmlist, members, names string
		want                   *tasks.ClusterView
	}{
		{"two nodes", vmList2, members2, names2, &tasks.ClusterView{
			Local: "pve1", Cluster: "lab",
			Members: map[string]tasks.ClusterMember{"pve1": {Online: true, IP: "10.0.0.11"}, "pve2": {}},
			Guests: map[int]tasks.ClusterGuest{
				8102: {Node: "pve2", Type: "qemu", Name: "web02"},
				100:  {Node: "pve1", Type: "lxc"},
				9000: {Node: "pve1", Type: "qemu", Name: "debian-12-cloud"},
			},
		}},
		{"standalone, no guests", vmListEmpty, membersAlone, "", &tasks.ClusterView{
			Local: "pve", Members: map[string]tasks.ClusterMember{"pve": {Online: true}}, Guests: map[int]tasks.ClusterGuest{},
		}},
		// A name under another node's directory than .vmlist says (a config
		// moved between the reads) is not taken.
		{"name of another owner", vmList2, membersAlone, "/etc/pve/nodes/pve1/qemu-server/8102.conf web02\n", &tasks.ClusterView{
			Local: "pve", Members: map[string]tasks.ClusterMember{"pve": {Online: true}},
			Guests: map[int]tasks.ClusterGuest{8102: {Node: "pve2", Type: "qemu"}, 100: {Node: "pve1", Type: "lxc"}, 9000: {Node: "pve1", Type: "qemu"}},
		}},
		{"no pmxcfs", "", "", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := fake.New(t, fake.BatchParallel(clusterLines(), fake.Out(tc.vmlist), fake.Out(tc.members), fake.Out(tc.names)))
			got, err := ReadCluster(context.Background(), node)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestClusterLines(t *testing.T) {
	want := []string{
		"test ! -e /etc/pve/.vmlist || cat /etc/pve/.vmlist",
		"test ! -e /etc/pve/.members || cat /etc/pve/.members",
		`set -- /etc/pve/nodes/*/qemu-server/*.conf; [ -e "$1" ] || exit 0` + "\n" +
			`exec awk 'FNR == 1 { main = 1 } /^\[/ { main = 0 } main && /^name:/ { print FILENAME, $2 }' "$@"`,
	}
	if got := clusterLines(); !reflect.DeepEqual(got, want) {
		t.Errorf("lines:\n%q\nwant\n%q", got, want)
	}
}

func TestReadClusterErrors(t *testing.T) {
	for _, tc := range []struct{ name, vmlist, members, want string }{
		{"vmlist not JSON", "{\n\"version\": 1,\n", "", "/etc/pve/.vmlist: unexpected end of JSON input"},
		{"vmid not a number", `{"ids": {"x": {"node": "pve1", "type": "qemu"}}}`, "", `/etc/pve/.vmlist: entry "x": not a vmid with its node`},
		{"members not JSON", vmListEmpty, "{", "/etc/pve/.members: unexpected end of JSON input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := fake.New(t, fake.BatchParallel(clusterLines(), fake.Out(tc.vmlist), fake.Out(tc.members), fake.Out("")))
			_, err := ReadCluster(context.Background(), node)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %s", err, tc.want)
			}
		})
	}
	node := fake.New(t, fake.BatchParallel(clusterLines(), fake.Fail(1, "cat: /etc/pve/.vmlist: Permission denied\n"), fake.Out(""), fake.Out("")))
	if _, err := ReadCluster(context.Background(), node); err == nil {
		t.Error("an unreadable .vmlist read as no view")
	}
}
