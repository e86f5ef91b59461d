package repo

import "sync"

// forEachID calls fn for every id, at most n calls at once, and returns
// the first error a call returned once every call has ended. fn guards
// whatever state it shares with the other calls.
func forEachID(ids []ID, n int, fn func(ID) error) error {
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		sem   = make(chan struct{}, n)
		first error
	)
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(id); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}
