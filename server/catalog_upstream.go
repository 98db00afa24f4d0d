package server

import (
	"github.com/toolgate/toolgate/policy"
	"github.com/toolgate/toolgate/upstream"
)

// UpstreamCatalog is what the policy sees of upstream tools, as the
// gateway's catalog holds them beside the built-in tools' (Catalog): each
// named with its prefix, its server the upstream's name (policy input
// tools[_].server), with its digest and whether the lock file has it
// (pinned). `toolgate policy explain` explains over that catalog.
func UpstreamCatalog(ups []upstream.Tool) []policy.Tool {
	out := make([]policy.Tool, 0, len(ups))
	for _, t := range ups {
		pt := catalogTool(t.Tool, t.Server)
		pt.Digest, pt.Pinned = t.Digest, t.Pinned
		out = append(out, pt)
	}
	return out
}
