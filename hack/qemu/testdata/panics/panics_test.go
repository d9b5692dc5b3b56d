package panics

import "testing"

func TestFine(t *testing.T) {}

func TestPanics(t *testing.T) { panic("on purpose") }
