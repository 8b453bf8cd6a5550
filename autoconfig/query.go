package autoconfig

import (
	"net/url"
	"strings"
)

// maxQueryParams is net/url's default cap on query parameters: past it,
// url.ParseQuery (and so echo's QueryParam) yields nothing, and so does
// QueryValue. (GODEBUG=urlmaxqueryparams moves net/url's cap, not this
// one; configuration requests carry one or two parameters.)
const maxQueryParams = 10000

// QueryValue returns the first value of key in a raw URL query, decoded as
// url.ParseQuery decodes it, without building the map of every parameter:
// the configuration handlers read one parameter on every request. A plain
// key=value pair is returned as a substring, with no allocation.
func QueryValue(rawQuery, key string) string {
	if strings.Count(rawQuery, "&") >= maxQueryParams {
		return ""
	}
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue // url.ParseQuery drops these too
		}
		k, v, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(k, "%+") {
			var err error
			if k, err = url.QueryUnescape(k); err != nil {
				continue
			}
		}
		if k != key {
			continue
		}
		if !strings.ContainsAny(v, "%+") {
			return v
		}
		if v, err := url.QueryUnescape(v); err == nil {
			return v
		}
	}
	return ""
}
