package backends

// Wrapper is implemented by a Backend that decorates another one (the
// metrics decorator times every call). A decorator implements every
// optional interface so that it can decorate it, so a type assertion on
// it says nothing about what the storage can do: ask As instead.
type Wrapper interface {
	Unwrap() Backend
}

// As reports whether the backend behind b (looking through wrappers) has
// the optional ability T (Expander, Snapshotter, …) and returns it. The
// ability returned is the outermost one, so calls through it are still
// decorated. Code outside this package detects abilities only through As:
// a plain type assertion on a decorated backend would claim abilities the
// storage lacks (TestAbilitiesOnlyThroughAs guards this).
func As[T any](b Backend) (T, bool) {
	var outer T
	found := false
	for {
		if t, ok := b.(T); ok && !found {
			outer, found = t, true
		}
		w, ok := b.(Wrapper)
		if !ok {
			if _, ok := b.(T); ok {
				return outer, true
			}
			var zero T
			return zero, false
		}
		b = w.Unwrap()
	}
}
