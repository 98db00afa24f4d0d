package policy

// PrincipalPaths is what of the principal the caches of e's policy key by:
// the paths under input.principal, or whole (every field).
func PrincipalPaths(e *Engine) (paths [][]string, whole bool) {
	k := e.cur.Load().callPrincipal
	return k.paths, k.whole
}

// ResidualQueries is how many residuals of partial evaluation e holds
// compiled: calls it decides from their arguments alone.
func ResidualQueries(e *Engine) int {
	if q := e.cur.Load().residualQueries; q != nil {
		return q.Len()
	}
	return 0
}
