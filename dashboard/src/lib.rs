//! The web dashboard for on-duty staff.
//!
//! It will own the axum routes and askama templates of the overview, layer,
//! top-N, series and alert pages. It reads only through
//! [`panorama_store::Store`] and the rules engine's alert state, and never
//! writes rollups.
//!
//! Today it holds the layer order of the overview page; the dashboard issue
//! fills it.

use panorama_model::Layer;

/// The order of the overview page's bands: the user's view first, then
/// down the stack to the hosts, the way a fault is traced.
pub fn overview_order() -> [Layer; 5] {
    Layer::ALL
}
