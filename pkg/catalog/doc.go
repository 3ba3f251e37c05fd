// Package catalog knows what EC2 can launch: every instance type's resources and
// labels, its offerings (zone x capacity type) with prices and spot risk, the
// allocatable a node of that type will report, and which offerings are
// temporarily out of capacity. It is pure data and math: the AWS provider feeds
// it (snapshot, then live refreshes) and the solver reads it.
package catalog
