package server

import (
	"net/url"
	"strings"
)

// originKey is the form in which origins are compared (RFC 6454 §4 and
// §6.2; RFC 3986 §6.2.2.1 and §6.2.3): scheme and host in lower case, the
// port as given unless it is the scheme's default, which is dropped. It is
// "" for anything that is not an http(s) origin: "null", a path, a query,
// user info.
func originKey(origin string) string {
	u, err := url.Parse(origin) // lower-cases the scheme
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.Path != "" || u.RawPath != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return ""
	}
	host := strings.ToLower(u.Host)
	if port := u.Port(); (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		host = strings.TrimSuffix(host, ":"+port)
	}
	return u.Scheme + "://" + host
}
