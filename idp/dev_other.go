//go:build !unix

package idp

// privateTempDir has no owner check to rely on here: without a
// configuration directory, $TOOLGATE_DEV_KEY must name the key.
func privateTempDir(noConfigDir error) (string, error) { return "", noConfigDir }
