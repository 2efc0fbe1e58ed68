//! Paging: the page walk for 32-bit, PAE and 4-level tables, and the
//! software TLB that maps linear pages to host pointers.

pub mod page_walk;
pub mod tlb;
