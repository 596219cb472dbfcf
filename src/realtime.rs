//! Running the harness's own timing-critical threads ahead of the machine's load.
//!
//! What a trial measures is the SUT's timing: when a close() returns, when a segment leaves.
//! A harness thread that wakes late on a loaded machine (CPU hogs at the same priority) would
//! add the scheduler's delay to the measurement. Where allowed (root), the thread that sends at
//! a scheduled moment and the threads that make socket calls run SCHED_FIFO while they wait:
//! they sleep or block in the kernel almost all the time, so they take no CPU from anyone.

/// The calling thread at real-time priority until dropped; a no-op where not permitted.
pub struct Realtime {
    entered: bool,
}

impl Realtime {
    pub fn enter() -> Realtime {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: plain syscalls on the calling thread with valid arguments.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
            // Already real-time (an outer guard): leave it to that guard to restore.
            if libc::sched_getscheduler(0) == libc::SCHED_FIFO {
                return Realtime { entered: false };
            }
            Realtime {
                entered: libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0,
            }
        }
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        if self.entered {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: as in `enter`.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
        }
    }
}
