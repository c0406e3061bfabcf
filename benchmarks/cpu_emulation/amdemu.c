// LD_PRELOAD: make CPUID report an AMD EPYC (Zen 2 class, AVX2 only, L1d 32K, L2 512K, L3 16M)
// using CPUID faulting (arch_prctl ARCH_SET_CPUID) and a SIGSEGV handler that emulates CPUID.
// A check of portable numerics on "another CPU kind" when only one is at hand (README, Tests).
// Needs an x86-64 Linux CPU with CPUID faulting (flag cpuid_fault in /proc/cpuinfo).
//   gcc -O2 -shared -fPIC -o /tmp/amdemu.so benchmarks/cpu_emulation/amdemu.c -ldl
//   LD_PRELOAD=/tmp/amdemu.so AMDEMU_L2=1024 python -c "import transferkit as tk; print(tk.numerics_fingerprint())"
// Cache sizes: AMDEMU_L1 (KiB), AMDEMU_L2 (KiB), AMDEMU_L3 (MiB), AMDEMU_L3SH (threads sharing L3).
// Glibc's own CPU detection runs before this library loads and is not affected (memcpy choice:
// no effect on numbers).  It keeps its SIGSEGV handler: a program that installs its own is refused.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <stdio.h>
#include <ucontext.h>
#include <unistd.h>
#include <dlfcn.h>
#include <sys/syscall.h>
#define ARCH_GET_CPUID 0x1011
#define ARCH_SET_CPUID 0x1012
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);
static long n_emulated;
static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
  __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}
static uint32_t envu(const char *n, uint32_t d){const char*v=getenv(n);return v?(uint32_t)strtoul(v,0,0):d;}
static uint32_t L1=32, L2=512, L3=16, L3SH=2;
static void emulate(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
  real_cpuid(leaf, sub, r);
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
  switch (leaf) {
  case 0: r[0] = 0x10; r[1] = 0x68747541; r[3] = 0x69746e65; r[2] = 0x444d4163; break; // AuthenticAMD
  case 1: r[0] = 0x00830F10; break;  // family 17h model 31h (Rome)
  case 4: r[0] = r[1] = r[2] = r[3] = 0; break;  // Intel-only leaf
  case 7:
    if (sub == 0) {
      r[1] &= ~((1u<<16)|(1u<<17)|(1u<<21)|(1u<<26)|(1u<<27)|(1u<<28)|(1u<<30)|(1u<<31));
      r[2] &= ~((1u<<1)|(1u<<6)|(1u<<8)|(1u<<9)|(1u<<10)|(1u<<11)|(1u<<12)|(1u<<14));
      r[3] &= ~((1u<<2)|(1u<<3)|(1u<<8)|(1u<<22)|(1u<<23)|(1u<<24)|(1u<<25));
      r[0] = 0;
    } else { r[0] = r[1] = r[2] = r[3] = 0; }
    break;
  case 0xd: if (sub >= 5 && sub <= 7) r[0] = r[1] = r[2] = r[3] = 0;  /* no AVX-512 state */
            if (sub >= 17 && sub <= 18) r[0] = r[1] = r[2] = r[3] = 0; break;
  case 0x80000000: r[0] = 0x8000001f; break;
  case 0x80000001: r[2] |= (1u<<22) | (1u<<6); break;  // topoext, sse4a
  case 0x80000005: r[2] = (L1<<24)|0x080140; r[3] = 0x20080140; break;
  case 0x80000006: r[2] = (L2<<16)|0x6140; r[3] = ((L3*2)<<18)|0x9040; break;
  case 0x8000001d:
    switch (sub) {
    case 0: r[0]=0x121; r[1]=0x01C0003F; r[2]=L1*1024/512-1; r[3]=0; break;
    case 1: r[0]=0x122; r[1]=0x01C0003F; r[2]=63; r[3]=0; break;
    case 2: r[0]=0x143; r[1]=0x01C0003F; r[2]=L2*1024/512-1; r[3]=0; break;
    case 3: r[0]=0x163|((L3SH-1)<<14); r[1]=0x03C0003F; r[2]=L3*1024*1024/1024-1; r[3]=1; break;
    default: r[0]=r[1]=r[2]=r[3]=0;
    }
    break;
  case 0x8000001e: break;
  default: if (leaf > 0x10 && leaf < 0x40000000) r[0]=r[1]=r[2]=r[3]=0;
  }
}
static void handler(int sig, siginfo_t *si, void *ctx) {
  ucontext_t *uc = ctx;
  greg_t *g = uc->uc_mcontext.gregs;
  unsigned char *ip = (unsigned char *)g[REG_RIP];
  if (ip[0] == 0x0f && ip[1] == 0xa2) {
    uint32_t r[4];
    emulate((uint32_t)g[REG_RAX], (uint32_t)g[REG_RCX], r);
    g[REG_RAX] = r[0]; g[REG_RBX] = r[1]; g[REG_RCX] = r[2]; g[REG_RDX] = r[3];
    g[REG_RIP] += 2; n_emulated++;
    return;
  }
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = SIG_DFL;
  real_sigaction(SIGSEGV, &sa, NULL);
}
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  if (!real_sigaction) real_sigaction = dlsym(RTLD_NEXT, "sigaction");
  if (sig == SIGSEGV && act) { if (old) memset(old, 0, sizeof *old); return 0; }  // keep ours
  return real_sigaction(sig, act, old);
}
static void report(void) { if (getenv("AMDEMU_VERBOSE")) fprintf(stderr, "amdemu: %ld CPUID emulated\n", n_emulated); }
__attribute__((constructor)) static void init(void) {
  real_sigaction = dlsym(RTLD_NEXT, "sigaction");
  L1=envu("AMDEMU_L1",32); L2=envu("AMDEMU_L2",512); L3=envu("AMDEMU_L3",16); L3SH=envu("AMDEMU_L3SH",2);
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = handler; sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  real_sigaction(SIGSEGV, &sa, NULL);
  if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) { perror("amdemu: ARCH_SET_CPUID"); exit(3); }
  atexit(report);
}
