//! STUB — owned by the store helper.
