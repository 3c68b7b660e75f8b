package nfs

import "syscall"

type (
	syscallStat   = syscall.Stat_t
	syscallStatfs = syscall.Statfs_t
)

func statfs(p string, s *syscall.Statfs_t) error { return syscall.Statfs(p, s) }
