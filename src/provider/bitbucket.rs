//! STUB — owned by the Bitbucket provider helper.
