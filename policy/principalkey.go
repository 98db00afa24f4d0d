package policy

import (
	"encoding/binary"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/toolgate/toolgate/idp"
)

// principalKey is what of the principal one query of a compiled policy can
// read: the paths under input.principal the rules it reaches name
// (input.principal.scopes, input.principal.claims.email), or the whole
// principal when one of them reads the input in a way a path cannot name. The caches key the
// principal by these fields only, so that two tokens of one user, or two
// users with the same grants, share their entries when the policy reads
// only the grants (docs/performance.md, "What makes a call cheap").
//
// Only the principal varies among the questions a revision's caches hold:
// the action is fixed per cache, the catalog per revision (a new catalog
// gets new caches) and the tool is in the key.
type principalKey struct {
	whole bool       // key by idp.Principal.Fingerprint
	paths [][]string // sorted, none a prefix of another; each starts with a field of input.principal
}

// readPrincipal walks the rules the query can reach (OPA's dependency graph
// of the compiled rules: every rule a reference could select, dynamic ones
// included, each with its else chain) for the references into the input,
// and returns the principal's paths they name. So the list (visible_tools)
// is not keyed by what only a call's rules read, such as the sub of the
// default policy's per-principal rate limits. It is conservative: anything
// that could read the principal by a path not written in the policy makes
// the key the whole principal:
//
//   - the input as a value (`x := input`, `object.get(input, ...)`,
//     `walk(input, ...)`, `json.marshal(input)`, a function given `input`);
//   - a variable or computed key where a path would name a field
//     (`input[k]`, `input.principal[k]`), or `input.principal` as a value;
//   - a `with` that replaces any part of the input.
//
// Below a field, a variable key keys by the field's value whole
// (`input.principal.claims[k]` keys by every claim).
func readPrincipal(compiler *ast.Compiler, query string) principalKey {
	var paths [][]string
	whole := false
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch v := x.(type) {
		case *ast.With:
			if ref, ok := v.Target.Value.(ast.Ref); !ok || ref[0].Equal(ast.InputRootDocument) {
				whole = true
			}
		case ast.Var:
			// Compiled modules name the input as a reference; a bare
			// variable of that name is a reading we do not understand.
			whole = whole || v.Equal(ast.InputRootDocument.Value)
		case ast.Ref:
			if !v[0].Equal(ast.InputRootDocument) {
				return whole
			}
			path, ok := principalPath(v)
			if !ok {
				whole = true
				return true
			}
			if path != nil {
				paths = append(paths, path)
			}
			for _, k := range v[1:] { // keys may read the input too
				vis.Walk(k)
			}
			return true // the head, input, is understood
		}
		return whole
	})
	for _, r := range reachable(compiler, ast.MustParseRef(query)) {
		vis.Walk(r)
	}
	if whole {
		return principalKey{whole: true}
	}
	return principalKey{paths: minimalPaths(paths)}
}

// reachable are the rules an evaluation of query can evaluate: those it
// names and, transitively, those they depend on, with every else chain.
func reachable(compiler *ast.Compiler, query ast.Ref) []*ast.Rule {
	seen := map[*ast.Rule]bool{}
	todo := compiler.GetRules(query)
	for len(todo) > 0 {
		r := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[r] {
			continue
		}
		seen[r] = true
		if r.Else != nil {
			todo = append(todo, r.Else)
		}
		for dep := range compiler.Graph.Dependencies(r) {
			todo = append(todo, dep.(*ast.Rule))
		}
	}
	return slices.Collect(maps.Keys(seen))
}

// principalPath is the path under input.principal that ref reads: nil for
// a reference to another part of the input (input.tool.name), and false
// when it cannot be told (input, input[k], input.principal,
// input.principal[k]). The path ends at the first key that is not a
// string.
func principalPath(ref ast.Ref) ([]string, bool) {
	if len(ref) < 2 {
		return nil, false
	}
	top, ok := ref[1].Value.(ast.String)
	if !ok {
		return nil, false
	}
	if top != "principal" {
		return nil, true
	}
	var path []string
	for _, k := range ref[2:] {
		s, ok := k.Value.(ast.String)
		if !ok {
			break
		}
		path = append(path, string(s))
	}
	if len(path) == 0 {
		return nil, false
	}
	return path, true
}

// minimalPaths sorts paths and drops those under another: reading
// claims keys by every claim, claims.email among them.
func minimalPaths(paths [][]string) [][]string {
	slices.SortFunc(paths, func(a, b []string) int { return slices.Compare(a, b) })
	var out [][]string
	for _, p := range paths {
		if len(out) > 0 && hasPrefix(p, out[len(out)-1]) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func hasPrefix(p, prefix []string) bool {
	return len(p) >= len(prefix) && slices.Equal(p[:len(prefix)], prefix)
}

// String is the key as `toolgate policy check` or a test would name it:
// "whole principal" or the paths, comma separated.
func (k principalKey) String() string {
	if k.whole {
		return "whole principal"
	}
	names := make([]string, len(k.paths))
	for i, p := range k.paths {
		names[i] = strings.Join(p, ".")
	}
	return strings.Join(names, ", ")
}

// Tags that keep the encoding of one principal apart from another's: each
// value says what it is before it says its bytes.
const (
	tagAbsent byte = iota // the path leads nowhere (a claim the token lacks)
	tagString
	tagList
	tagJSON  // a value from the claims, as encoding/json writes it (keys sorted)
	tagWhole // a value that is not an object above the path's end, whole
	tagFingerprint
)

// append appends to b an encoding of what of p the policy reads. Two
// principals get the same bytes only when every path the policy reads
// holds the same value in both (or is absent in both): the encoding of
// each path's value is self-delimiting, and the paths are the same for
// every principal of a revision.
func (k principalKey) append(b []byte, p *idp.Principal) []byte {
	if k.whole {
		return append(b, p.Fingerprint()...)
	}
	for _, path := range k.paths {
		b = appendField(b, p, path)
	}
	return b
}

func appendField(b []byte, p *idp.Principal, path []string) []byte {
	var list []string
	switch path[0] {
	case "sub":
		return appendString(b, p.Sub)
	case "iss":
		return appendString(b, p.Iss)
	case "client_id":
		return appendString(b, p.ClientID)
	case "provider":
		return appendString(b, p.Provider)
	case "org_id":
		return appendString(b, p.OrgID)
	case "scopes":
		list = p.Scopes
	case "permissions":
		list = p.Permissions
	case "roles":
		list = p.Roles
	case "claims":
		return appendClaim(b, p, path[1:])
	default:
		// The input's schema has no other field: nothing to read.
		return append(b, tagAbsent)
	}
	// A list has no field of a string name: below it the policy reads
	// nothing, yet the list is keyed whole, in doubt.
	b = append(b, tagList)
	b = binary.AppendUvarint(b, uint64(len(list)))
	for _, s := range list {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = append(b, tagString)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendClaim appends the value at path under the claims: absent, the
// value there, or the first value on the way that is not an object (below
// which the policy reads nothing, keyed whole in doubt).
func appendClaim(b []byte, p *idp.Principal, path []string) []byte {
	var v any = p.Claims
	if p.Claims == nil {
		v = map[string]any{}
	}
	tag := tagJSON
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			tag = tagWhole
			break
		}
		if v, ok = m[k]; !ok {
			return append(b, tagAbsent)
		}
	}
	data, err := json.Marshal(v) // sorted keys: canonical
	if err != nil {
		// Claims come from JSON and always encode; one built by hand that
		// does not is keyed by the whole principal.
		return append(append(b, tagFingerprint), p.Fingerprint()...)
	}
	b = binary.AppendUvarint(append(b, tag), uint64(len(data)))
	return append(b, data...)
}
