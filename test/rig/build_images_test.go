package rig

import (
	"context"
	"testing"
	"time"
)

func TestEnsureImagesBuildsAndReuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	pool, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	im, err := EnsureImages(ctx, pool, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{im.Base, im.Node, im.Guest} {
		if !have(pool, tag) {
			t.Errorf("image %s missing after EnsureImages", tag)
		}
	}
	var logged []string
	again, err := EnsureImages(ctx, pool, func(f string, a ...any) { logged = append(logged, f) })
	if err != nil || again != im || len(logged) != 0 {
		t.Errorf("second EnsureImages: %+v, %v, logged %q: want the same tags, no build", again, err, logged)
	}
}
