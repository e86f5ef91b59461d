package sealed

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpensOnlyWithTheRecipientsKey(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(`{"object":"apiVersion: v1"}`)
	s, err := Seal(k.Public(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s.Ciphertext, msg) {
		t.Fatal("ciphertext holds the plaintext")
	}
	got, err := k.Open(s)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open = %q, %v; want %q", got, err, msg)
	}
	if _, err := other.Open(s); !errors.Is(err, ErrNotForThisKey) {
		t.Fatalf("another key opened it: %v", err)
	}
	s.Ciphertext[0] ^= 1
	if _, err := k.Open(s); !errors.Is(err, ErrNotForThisKey) {
		t.Fatalf("an altered answer opened: %v", err)
	}
	if _, err := Seal("bm90IGEga2V5", msg); err == nil {
		t.Fatal("sealed to a key of 9 bytes")
	}
}
