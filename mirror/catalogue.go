package mirror

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/drepo-dev/drepo/mirror/dav"

	"github.com/drepo-dev/drepo/manifests"
)

// Catalogue errors: sync refuses to publish, before any repository's index is touched.
var (
	// ErrRemovals: the new index would drop more than half of the published app versions.
	ErrRemovals = errors.New("refusing to remove most published app versions")
	// ErrRepublish: a published app version's content changed in the source.
	ErrRepublish = errors.New("a published app version changed")
	// ErrUntrustedKey: the signing key's public half is not among the trusted keys.
	ErrUntrustedKey = errors.New("the signing key is not among trusted_keys")
	// ErrSerialRange: a serial at or above MaxSerial was seen; sync will not sign past it.
	ErrSerialRange = errors.New("index serial out of range")
)

// versionID names an app version as the CLI does: app@version.
func versionID(e manifests.AppEntry) string { return e.App + "@" + e.Version }

// removedVersions lists the entries of published that next lacks, by app@version.
func removedVersions(published *manifests.Index, next []manifests.AppEntry) []string {
	if published == nil {
		return nil
	}
	have := map[string]bool{}
	for _, e := range next {
		have[versionID(e)] = true
	}
	var out []string
	for _, e := range published.Apps {
		if !have[versionID(e)] {
			out = append(out, versionID(e))
		}
	}
	return out
}

// checkRemovals refuses an index that drops more than half of the published versions for
// reasons other than retention (keep): an unmounted share or a wrong source path looks like
// an empty folder, and publishing it would empty every device's catalogue.
func checkRemovals(published *manifests.Index, removed []string, retained map[string]bool, allow bool) error {
	if published == nil || allow || len(published.Apps) == 0 {
		return nil
	}
	var unplanned []string
	for _, id := range removed {
		if !retained[id] {
			unplanned = append(unplanned, id)
		}
	}
	if 2*len(unplanned) <= len(published.Apps) {
		return nil
	}
	return fmt.Errorf("mirror: %w: the source would remove %d of the %d published app versions (%s); check that the source folder is mounted and complete, or pass --allow-removals if this is meant",
		ErrRemovals, len(unplanned), len(published.Apps), listSome(unplanned, 10))
}

// changedVersion is a published app version whose manifest differs in the source.
type changedVersion struct {
	id       string
	old, new manifests.Hash
}

// changedVersions lists the versions of next that one of the known verified indexes
// publishes with another manifest.
func changedVersions(known []*manifests.Index, next []manifests.AppEntry) []changedVersion {
	pub := map[string]manifests.Hash{}
	for _, x := range known {
		for _, e := range x.Apps {
			pub[versionID(e)] = e.Manifest
		}
	}
	var out []changedVersion
	for _, e := range next {
		if old, ok := pub[versionID(e)]; ok && old != e.Manifest {
			out = append(out, changedVersion{id: versionID(e), old: old, new: e.Manifest})
		}
	}
	return out
}

// adoptPublished keeps the published manifest of every changed version whose files are
// the same (paths, hashes, sizes, modes) and whose chunk size alone differs: chunk_size
// (or its default) changed since the version was published, and a published version is
// immutable. It returns how many versions it took back; the others stay changed.
func adoptPublished(ctx context.Context, changed []changedVersion, versions []*Version, remotes []dav.Remote, opt SyncOptions) int {
	n := 0
	for _, c := range changed {
		i := slices.IndexFunc(versions, func(v *Version) bool { return versionID(v.Entry()) == c.id })
		if i < 0 {
			continue
		}
		for _, r := range remotes {
			if r == nil {
				continue
			}
			doc, err := dav.ReadManifestDoc(ctx, r, c.old, 0, opt.readOpts())
			if err != nil {
				continue
			}
			old, err := manifests.DecodeManifest(doc)
			if err != nil || !sameFiles(old, versions[i].Manifest) {
				break
			}
			opt.Log.Info("keeping the published manifest of an unchanged version (its chunk size differs from chunk_size)",
				"version", c.id, "chunk_size", old.ChunkSize)
			versions[i] = &Version{Manifest: old, Doc: doc, Hash: c.old, Dir: versions[i].Dir}
			n++
			break
		}
	}
	return n
}

// sameFiles reports whether two manifests of one app version list the same files.
func sameFiles(a, b *manifests.Manifest) bool {
	if a.App != b.App || a.Version != b.Version || len(a.Files) != len(b.Files) {
		return false
	}
	key := func(f manifests.File) string {
		return fmt.Sprintf("%s\x00%s\x00%d\x00%v", f.Path, f.SHA256, f.Size, f.Executable)
	}
	want := map[string]bool{}
	for _, f := range a.Files {
		want[key(f)] = true
	}
	for _, f := range b.Files {
		if !want[key(f)] {
			return false
		}
	}
	return true
}

// describeChange names the files that differ between a published manifest (read by hash
// from the first repository that has it) and the source's.
func describeChange(ctx context.Context, c changedVersion, next *Version, remotes []dav.Remote, opt SyncOptions) string {
	var old *manifests.Manifest
	for _, r := range remotes {
		if r == nil {
			continue
		}
		m, err := dav.ReadManifest(ctx, r, c.old, opt.readOpts())
		if err == nil {
			old = m
			break
		}
	}
	if old == nil {
		return "its files differ (the published manifest could not be read to say which)"
	}
	was := map[string]manifests.File{}
	for _, f := range old.Files {
		was[f.Path] = f
	}
	var diffs []string
	for _, f := range next.Manifest.Files {
		o, ok := was[f.Path]
		delete(was, f.Path)
		switch {
		case !ok:
			diffs = append(diffs, "added "+f.Path)
		case o.SHA256 != f.SHA256:
			diffs = append(diffs, "changed "+f.Path)
		case o.Executable != f.Executable:
			diffs = append(diffs, "mode of "+f.Path)
		}
	}
	for p := range was {
		diffs = append(diffs, "removed "+p)
	}
	slices.Sort(diffs)
	if len(diffs) == 0 {
		return fmt.Sprintf("its manifest differs (chunk size %d, was %d)", next.Manifest.ChunkSize, old.ChunkSize)
	}
	return listSome(diffs, 5)
}

// checkRepublish refuses versions whose published content changed, unless named in allow.
func checkRepublish(ctx context.Context, changed []changedVersion, versions []*Version, allow []string, remotes []dav.Remote, opt SyncOptions) error {
	var msgs []string
	for _, c := range changed {
		if slices.Contains(allow, c.id) {
			opt.Log.Warn("republishing a changed app version (--republish): devices that hold it keep the old bytes", "version", c.id)
			continue
		}
		i := slices.IndexFunc(versions, func(v *Version) bool { return versionID(v.Entry()) == c.id })
		msgs = append(msgs, c.id+": "+describeChange(ctx, c, versions[i], remotes, opt))
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("mirror: %w: %s; a published version is immutable (devices that hold it would never see the change): publish it as a new version, or pass --republish APP@VERSION if this is meant",
		ErrRepublish, strings.Join(msgs, "; "))
}

// listSome joins the first n items and says how many more there are.
func listSome(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}
