"""The Moorage operator: informers, work queue, leader election and the reconcilers of our kinds."""
