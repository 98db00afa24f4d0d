package policy

// PrincipalPaths is what of the principal the caches of e's policy key by:
// the paths under input.principal, or whole (every field).
func PrincipalPaths(e *Engine) (paths [][]string, whole bool) {
	k := e.cur.Load().callPrincipal
	return k.paths, k.whole
}
