//! Values a reload replaces while requests are using them.
//!
//! A [`Live`] holds an `Arc` that readers take once and keep for as long as one unit of
//! work lasts (an exchange, a tunnel's sniffing, an admin call), so everything that work
//! sees comes from one configuration even if a reload lands halfway through. Writers swap
//! the whole value; nobody ever mutates one in place.

use std::sync::{Arc, RwLock};

pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live(RwLock::new(Arc::new(value)))
    }

    pub fn shared(value: Arc<T>) -> Live<T> {
        Live(RwLock::new(value))
    }

    /// The current value. The lock is held only to clone the `Arc`.
    pub fn get(&self) -> Arc<T> {
        // Writers only assign a whole `Arc`, which cannot panic halfway: a poisoned lock
        // still holds a complete value.
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the value; readers holding the old one keep it until they drop it.
    pub fn set(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = value;
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_keep_what_they_took_across_a_swap() {
        let live = Live::new(1);
        let before = live.get();
        live.set(Arc::new(2));
        assert_eq!(*before, 1, "a reader's snapshot is not changed under it");
        assert_eq!(*live.get(), 2, "later readers see the new value");
    }
}
