package imap

import (
	"container/list"
	"sync"
)

// headerCacheBytes bounds the header cache of one Server: about 40,000
// typical header blocks.
const headerCacheBytes = 16 << 20

// maxCachedHeader is the largest header block worth caching; larger ones
// are read from the body file each time.
const maxCachedHeader = 64 << 10

// headerCache keeps the header blocks of recently used messages, keyed by
// their body (store.IndexEntry.BodyKey). Bodies never change, so an entry
// never goes stale; it only ages out (least recently used first) when the
// cache is over its byte budget. FETCH of header fields and ENVELOPE and
// SEARCH on header fields then need no file at all.
type headerCache struct {
	mu    sync.Mutex
	max   int
	size  int
	order *list.List // front: most recently used; values are *hdrItem
	items map[string]*list.Element
}

type hdrItem struct {
	key string
	hdr []byte
}

// hdrItemOverhead approximates the memory of one entry beyond its bytes
// (map slot, list element, item, key).
const hdrItemOverhead = 160

func newHeaderCache(max int) *headerCache {
	return &headerCache{max: max, order: list.New(), items: map[string]*list.Element{}}
}

// get returns the cached header block; callers must not modify it.
func (c *headerCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*hdrItem).hdr, true
}

// put caches a header block, which must not be modified afterwards.
func (c *headerCache) put(key string, hdr []byte) {
	cost := len(hdr) + len(key) + hdrItemOverhead
	if len(hdr) > maxCachedHeader || cost > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&hdrItem{key: key, hdr: hdr})
	c.size += cost
	for c.size > c.max {
		el := c.order.Back()
		it := el.Value.(*hdrItem)
		c.order.Remove(el)
		delete(c.items, it.key)
		c.size -= len(it.hdr) + len(it.key) + hdrItemOverhead
	}
}
