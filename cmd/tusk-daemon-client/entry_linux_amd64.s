//go:build !cgo

#include "textflag.h"

// entry is the process's entry point when linked with -E main.entry (see
// entry_linux_amd64.go): it runs the client's request before the Go
// runtime starts, and starts the runtime only when that did not settle it.
TEXT ·entry(SB),NOSPLIT|NOFRAME,$0
	// Go code finds its g at -8(FS): point FS past a slot holding a zeroed
	// g, whose stack guard of 0 lets every stack check pass. The runtime
	// sets FS again when it starts.
	LEAQ	·preG(SB), AX
	MOVQ	AX, ·preTLS(SB)
	LEAQ	·preTLS+8(SB), SI
	MOVQ	$0x1002, DI // ARCH_SET_FS
	MOVQ	$158, AX // SYS_arch_prctl
	SYSCALL
	CMPQ	AX, $0xfffffffffffff001
	JCC	runtime

	// status := prestart(argc, argv), with the stack as the kernel left it.
	MOVQ	0(SP), AX
	LEAQ	8(SP), BX
	SUBQ	$32, SP
	MOVQ	AX, 0(SP)
	MOVQ	BX, 8(SP)
	CALL	·prestart(SB)
	MOVQ	16(SP), AX
	ADDQ	$32, SP
	TESTQ	AX, AX
	JS	runtime
	MOVQ	AX, DI
	MOVQ	$231, AX // SYS_exit_group
	SYSCALL

runtime:
	// The stack pointer is back at argc, as the runtime's entry expects.
	JMP	_rt0_amd64_linux(SB)
