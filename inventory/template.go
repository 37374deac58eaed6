package inventory

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// DefaultImageBaseURL is where a template_image file name is fetched from
// unless template_image_base_url says otherwise: Ubuntu's cloud images, as
// the original vm-manager.sh fetched them. {release} stands for the file
// name's first word (noble-server-cloudimg-amd64.img: noble).
const DefaultImageBaseURL = "https://cloud-images.ubuntu.com/{release}/current/"

// ImageSource is where a template's cloud image comes from and what it
// becomes on the node.
type ImageSource struct {
	URL  string
	File string // the file name on the node: the URL's last path element
	// Content is the Proxmox storage content type the file is kept as:
	// "iso" for .img and .iso (template/iso/), "import" for .qcow2, .raw
	// and .vmdk (import/, PVE 8.4 and later for download-url).
	Content string
}

// imageFileRE is a file name download-url keeps as it is (it replaces
// every other character by '_'), so the name phoenix looks for is the name
// the node writes.
var imageFileRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// imageContent maps an image file's extension to its content type.
func imageContent(file string) (string, bool) {
	ext := path.Ext(file)
	switch {
	case strings.EqualFold(ext, ".img"), strings.EqualFold(ext, ".iso"):
		return "iso", true
	case ext == ".qcow2", ext == ".raw", ext == ".vmdk":
		return "import", true
	}
	return "", false
}

// ResolveImage turns template_image (a file name or an http(s) URL) and
// the base URL for file names ("" for DefaultImageBaseURL) into where the
// image comes from.
func ResolveImage(image, baseURL string) (ImageSource, error) {
	raw := image
	if !strings.Contains(image, "://") {
		if strings.Contains(image, "/") {
			return ImageSource{}, fmt.Errorf("must be a file name (resolved against the base URL) or an http(s) URL, not %q", image)
		}
		base := baseURL
		if base == "" {
			base = DefaultImageBaseURL
		}
		release, _, _ := strings.Cut(image, "-")
		base = strings.ReplaceAll(base, "{release}", release)
		if !strings.HasSuffix(base, "/") {
			base += "/"
		}
		raw = base + image
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return ImageSource{}, fmt.Errorf("%q is not a URL: %v", raw, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return ImageSource{}, fmt.Errorf("%s: only http:// and https:// URLs can be downloaded on the node", raw)
	case u.Host == "":
		return ImageSource{}, fmt.Errorf("%s: no host in the URL", raw)
	case u.User != nil:
		return ImageSource{}, fmt.Errorf("%s: credentials in the URL would show in the node's task log and process list", u.Redacted())
	}
	file := path.Base(u.Path)
	if !imageFileRE.MatchString(file) {
		return ImageSource{}, fmt.Errorf("%s: the file name %q must be letters, digits, '.', '_' and '-' (the name Proxmox stores it under)", raw, file)
	}
	content, ok := imageContent(file)
	if !ok {
		return ImageSource{}, fmt.Errorf("%s: %s is not an image Proxmox imports: the name must end in .img, .iso, .qcow2, .raw or .vmdk (a compressed image cannot be imported)", raw, file)
	}
	return ImageSource{URL: u.String(), File: file, Content: content}, nil
}

// checkTemplate checks what builds a template, and settles the checksum's
// spelling.
func (l *loader) checkTemplate(s *vmSource) {
	vm := s.vm
	vm.TemplateImageSHA256 = strings.ToLower(vm.TemplateImageSHA256)
	if !vm.IsTemplate {
		if vm.TemplateImage != "" {
			l.warn(s.ptr+"/template_image", "only used with is_template: true; ignored")
		}
		return
	}
	switch {
	case vm.TemplateImage != "" && vm.CloneFromVMID != 0:
		l.problem(s.ptr+"/clone_from_vmid", "a template is built from template_image or cloned from clone_from_vmid, not both")
	case vm.TemplateImage == "" && vm.CloneFromVMID == 0:
		l.warn(s.ptr+"/is_template", "no template_image: phoenix cannot build this template, it must exist on the node already")
	}
	if vm.TemplateImage != "" {
		if _, err := ResolveImage(vm.TemplateImage, vm.TemplateImageBaseURL); err != nil {
			l.problem(s.ptr+"/template_image", "%v", err)
		}
		if vm.TemplateImageSHA256 == "" {
			l.warn(s.ptr+"/template_image", "no template_image_sha256: the downloaded image is not verified and a changed image goes unnoticed; add the sha256 its vendor publishes (SHA256SUMS)")
		}
	}
	if vm.TemplateImage == "" && vm.TemplateImageSHA256 != "" {
		l.warn(s.ptr+"/template_image_sha256", "without template_image; ignored")
	}
	for _, snap := range []struct{ key, name string }{{"pre-features", vm.Snapshots.PreFeatures}, {"post-features", vm.Snapshots.PostFeatures}} {
		if snap.name != "" {
			l.warn(s.ptr+"/snapshots/"+snap.key, "a template keeps no snapshots (qm template refuses a VM that has any): phoenix does not take %s", snap.name)
		}
	}
}
