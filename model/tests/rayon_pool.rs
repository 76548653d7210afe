//! `limit_rayon_pool`: the first call sizes rayon's global pool, later ones change nothing
//! (its own test binary: the global pool is per process).

#[test]
fn the_first_limit_sizes_the_global_pool() {
    ringattn_model::limit_rayon_pool(3);
    assert_eq!(rayon::current_num_threads(), 3);
    ringattn_model::limit_rayon_pool(5);
    assert_eq!(rayon::current_num_threads(), 3);
}
