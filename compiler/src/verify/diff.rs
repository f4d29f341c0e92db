pub fn placeholder_removed_below() {}
