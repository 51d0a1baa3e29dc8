//go:build !linux

package rss

// DropFilePages is a no-op outside Linux.
func DropFilePages() {}
