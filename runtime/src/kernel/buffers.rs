//! Aligned, pooled buffers of the kernel: [`AlignedBuf`] starts on a 64-byte boundary and
//! returns its storage to a process-wide pool per element type ([`Pooled`]) when dropped, so
//! the K/V packing of every ring step reuses memory that is already mapped and touched.

use std::sync::Mutex;

/// Element types of [`AlignedBuf`]: each has a process-wide pool of released storage, so the
/// K/V packing of every ring step and every call reuses memory that is already mapped and
/// touched instead of paying page faults for fresh zeroed allocations each time.
pub(crate) trait Pooled: Copy + Default + Send + 'static {
    fn pool() -> &'static Mutex<Vec<Vec<Self>>>;
}

macro_rules! pooled {
    ($($t:ty),*) => {$(
        impl Pooled for $t {
            fn pool() -> &'static Mutex<Vec<Vec<$t>>> {
                static POOL: Mutex<Vec<Vec<$t>>> = Mutex::new(Vec::new());
                &POOL
            }
        }
    )*};
}
pooled!(f32, u16, u32);
// A type no kernel uses, so the pool test below owns its pool.
#[cfg(test)]
pooled!(i8);

/// Released buffers kept per element type (the largest ones win).
const POOL_KEEP: usize = 8;

/// A buffer (f32 unless said otherwise) whose first element sits on a 64-byte boundary, so rows
/// whose length is a multiple of 16 floats never split a cache line on a full-width vector load
/// (a split load costs two load slots). Safe: it over-allocates and starts at the aligned offset.
/// Its storage goes back to the type's pool when dropped.
pub(crate) struct AlignedBuf<T: Pooled = f32> {
    storage: Vec<T>,
    offset: usize,
    len: usize,
}

impl<T: Pooled> AlignedBuf<T> {
    /// `len` zeros, 64-byte aligned.
    pub(crate) fn zeroed(len: usize) -> Self {
        let mut buf = Self::reused(len);
        buf.as_mut_slice().fill(T::default());
        buf
    }

    /// `len` elements, 64-byte aligned, holding whatever a released buffer held (initialised,
    /// but not zero): for buffers the caller overwrites entirely. Takes the smallest pooled
    /// storage that fits (and is at most twice the size), else allocates.
    pub(crate) fn reused(len: usize) -> Self {
        let slack = 64 / std::mem::size_of::<T>().max(1);
        let want = len + slack;
        let mut storage = {
            let mut pool = T::pool().lock().unwrap_or_else(|e| e.into_inner());
            let best = (0..pool.len())
                // At most twice the size: a small scratch must not take a large panel buffer.
                .filter(|&i| (want..=2 * want).contains(&pool[i].capacity()))
                .min_by_key(|&i| pool[i].capacity());
            best.map(|i| pool.swap_remove(i)).unwrap_or_default()
        };
        storage.resize(want, T::default());
        let offset = storage.as_ptr().align_offset(64).min(slack);
        AlignedBuf {
            storage,
            offset,
            len,
        }
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        &self.storage[self.offset..self.offset + self.len]
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.storage[self.offset..self.offset + self.len]
    }
}

impl<T: Pooled> Drop for AlignedBuf<T> {
    fn drop(&mut self) {
        let storage = std::mem::take(&mut self.storage);
        if storage.capacity() == 0 {
            return;
        }
        let mut pool = T::pool().lock().unwrap_or_else(|e| e.into_inner());
        pool.push(storage);
        if pool.len() > POOL_KEEP {
            // Keep the largest: they serve every smaller request too.
            let smallest = (0..pool.len()).min_by_key(|&i| pool[i].capacity());
            if let Some(i) = smallest {
                pool.swap_remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_storage_is_reused_aligned_and_zeroed_on_request() {
        // i8: no kernel uses it, so no concurrent test can take the storage in between.
        let len = 123_457;
        let mut a = AlignedBuf::<i8>::zeroed(len);
        a.as_mut_slice().fill(7);
        let ptr = a.as_slice().as_ptr();
        drop(a);
        let b = AlignedBuf::<i8>::reused(len);
        assert_eq!(b.as_slice().as_ptr(), ptr, "the released storage came back");
        assert_eq!(b.as_slice().as_ptr() as usize % 64, 0);
        assert!(
            b.as_slice().iter().all(|&x| x == 7),
            "reused: contents kept"
        );
        drop(b);
        let c = AlignedBuf::<i8>::zeroed(len - 5);
        assert_eq!(c.as_slice().len(), len - 5);
        assert!(c.as_slice().iter().all(|&x| x == 0), "zeroed: zeros");
        // A much smaller request does not take the large storage.
        drop(c);
        let small = AlignedBuf::<i8>::reused(1000);
        assert_ne!(small.as_slice().as_ptr(), ptr);
    }
}
