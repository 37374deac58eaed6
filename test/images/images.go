// Package images holds the recipes of the rig's Docker images: the package
// list of the base rootfs and the build contexts of the node and guest images.
// The rig hashes these files to tag the images, so any edit here rebuilds.
package images

import (
	"embed"
	"io/fs"
)

//go:embed base node guest
var recipes embed.FS

// Recipes returns the recipe tree: base/, node/ and guest/.
func Recipes() fs.FS { return recipes }
