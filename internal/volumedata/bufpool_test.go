package volumedata

import "testing"

// The buffer classes cover every size up to maxPooledBuf with at most 25 %
// slack, each class has one size, and a buffer of a class's size maps back
// to that class (what put relies on).
func TestBufClasses(t *testing.T) {
	var p bufPool
	lastClass, lastSize := -1, 0
	check := func(n int) {
		c, size := bufClass(n)
		if c < 0 || c >= len(p.classes) {
			t.Fatalf("size %d: class %d out of range", n, c)
		}
		if size < n || size-n > max(n/4, minPooledBuf) {
			t.Fatalf("size %d: class %d holds %d bytes", n, c, size)
		}
		if c2, s2 := bufClass(size); c2 != c || s2 != size {
			t.Fatalf("a %d-byte buffer (class %d) maps to class %d of %d bytes", size, c, c2, s2)
		}
		if c < lastClass || (c == lastClass) != (size == lastSize) {
			t.Fatalf("size %d: class %d of %d bytes after class %d of %d bytes", n, c, size, lastClass, lastSize)
		}
		lastClass, lastSize = c, size
	}
	for n := 1; n <= 1<<16; n++ {
		check(n)
	}
	for n := 1 << 16; n <= maxPooledBuf; n += 4093 {
		check(n)
	}
	check(maxPooledBuf)
	if lastClass != len(p.classes)-1 {
		t.Errorf("the largest size is in class %d of %d: classes unused", lastClass, len(p.classes))
	}
	for _, n := range []int{1, 5000, 1 << 20, maxPooledBuf, maxPooledBuf + 1} {
		b := p.get(n)
		if len(b) != n {
			t.Errorf("get(%d) has length %d", n, len(b))
		}
		p.put(b)
	}
}
