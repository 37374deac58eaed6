package pvesim

import "testing"

func TestPropertyListFormats(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		format         func(string) string
	}{
		{"ipconfig static", "ip=10.0.0.5/24,gw=10.0.0.1", "", formatIPConfig},
		{"ipconfig unknown key", "ip=dhcp,dns=1.1.1.1", "invalid format - property 'dns' is not defined in schema", formatIPConfig},
		{"ipconfig no value", "dhcp", "invalid format - format error", formatIPConfig},
		{"cicustom vendor", "vendor=local:snippets/phoenix-8101-hostkey.yml", "", formatCicustom},
		{"cicustom not a volume", "user=snippets/u.yml", "invalid format - unable to parse volume ID 'snippets/u.yml'", formatCicustom},
		{"cicustom unknown part", "vendor=local:s/v.yml,extra=local:x", "invalid format - property 'extra' is not defined in schema", formatCicustom},
	} {
		if got := tc.format(tc.in); got != tc.want {
			t.Errorf("%s: %q gives %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}
