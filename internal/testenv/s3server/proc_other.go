//go:build !linux

package s3server

import "syscall"

// sysProcAttr puts the server in its own process group so Stop reaches any
// child.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
