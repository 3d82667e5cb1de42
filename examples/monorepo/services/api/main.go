// Command api is the monorepo example's API service.
package main

import (
	"fmt"

	"example.com/monorepo/libs/shared"
)

func main() { fmt.Println(shared.Greeting("api")) }
